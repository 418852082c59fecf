// Small DOM helpers: build elements without innerHTML, so no text is ever parsed as markup.

/**
 * h("button", {class: "x", onclick: f, "aria-label": "..."}, "text", child, ...)
 * Attributes: "class", "text", on* listeners, booleans (true sets, false/null omits), dataset.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      el.addEventListener(name.slice(2), value);
    } else if (name === "class") {
      el.className = value;
    } else if (name === "text") {
      el.textContent = value;
    } else if (name === "dataset") {
      Object.assign(el.dataset, value);
    } else if (value === true) {
      el.setAttribute(name, "");
    } else {
      el.setAttribute(name, String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
}

/** The element with this id; throws when the page lacks it (a broken page should say so). */
export function byId(id) {
  const el = document.getElementById(id);
  if (!el) throw new Error(`the page has no element #${id}`);
  return el;
}

export function clear(el) {
  el.replaceChildren();
  return el;
}

export function show(el, visible = true) {
  el.hidden = !visible;
}
