"""``imagegate mcp``: a Model Context Protocol server that lets AI assistants (Claude Code,
Cursor, VS Code and others) make and edit images through any imagegate or APIXO-compatible
service, with the ``imagegate_client`` SDK (docs/mcp.md).

    command.py   the command's arguments and start; imports the ``mcp`` SDK (the ``mcp``
                 extra) only when it runs
    server.py    the tools on the SDK's MCPServer, on stdio or streamable HTTP
    tools.py     the tools, each a call or a few of the SDK client
    schemas.py   the tools' argument types: JSON Schema and validation, the contract's limits
    results.py   records and errors as tool results (errors: isError, never a crash)
"""
