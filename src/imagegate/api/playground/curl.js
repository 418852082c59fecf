// The curl command that sends exactly the submit the page sent: the same URL and the same body,
// byte for byte, with the key left as $IMAGEGATE_API_KEY so that it is never shown.

import {bytes} from "./format.js";

/** ``text`` as one single-quoted shell word. */
export function shellQuote(text) {
  return `'${text.replaceAll("'", "'\\''")}'`;
}

export function curlCommand(origin, model, bodyText) {
  const url = `${origin}/api/v1/generateTask/${encodeURIComponent(model)}`;
  return [
    `curl -sS -X POST ${shellQuote(url)}`,
    `  -H "Authorization: Bearer $IMAGEGATE_API_KEY"`,
    `  -H 'Content-Type: application/json'`,
    `  --data-raw ${shellQuote(bodyText)}`,
  ].join(" \\\n");
}

const DATA_URI = /data:image\/[a-z0-9.+-]+;base64,[A-Za-z0-9+/=]{64,}/gi;

/** The command for reading: each long data: URI cut short, saying how much was left out. The
 * Copy button copies the exact command. */
export function shortened(command) {
  return command.replace(DATA_URI, (uri) => {
    const comma = uri.indexOf(",") + 1;
    return `${uri.slice(0, comma + 24)}…(${bytes(uri.length - comma - 24)} more)`;
  });
}
