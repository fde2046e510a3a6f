"""A scripted stand-in for `smalltalk-lsp serve`, stdlib only, for the plugin's own tests.

It speaks just enough LSP over stdio to exercise the Neovim plugin: hover, a rename it never
answers (the plugin cancels it), code actions
(with resolve and a command that opens a Markdown file via window/showDocument), inline
completion, the adapter commands and the `smalltalk/status` notification. Every request and
notification it receives is appended to the JSON-lines file named by STUB_LOG, so a test can
check what the client sent (initializationOptions, didChangeConfiguration, executeCommand).
"""

import json
import os
import sys
import tempfile

LOG = os.environ.get("STUB_LOG")
ADAPTERS = [
    {"name": "house-style", "path": "/a/house.gguf", "base_architecture": "gemma3",
     "loaded": True, "active": False, "scale": 1.0, "error": None},
    {"name": "tests", "path": "/a/tests.gguf", "base_architecture": "gemma3",
     "loaded": False, "active": False, "scale": 1.0, "error": None},
]
KINDS = ["refactor.smalltalk.explain", "refactor.smalltalk.design", "refactor.smalltalk.implement",
         "refactor.smalltalk.tests", "refactor.smalltalk.comment"]


def read():
    headers = {}
    while True:
        line = sys.stdin.buffer.readline()
        if not line:
            return None
        line = line.decode("ascii").strip()
        if not line:
            break
        key, _, value = line.partition(":")
        headers[key.lower()] = value.strip()
    return json.loads(sys.stdin.buffer.read(int(headers["content-length"])))


def send(message):
    body = json.dumps(message).encode()
    sys.stdout.buffer.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
    sys.stdout.buffer.flush()


def log(message):
    if LOG:
        with open(LOG, "a") as f:
            f.write(json.dumps(message) + "\n")


def main():
    next_id = 1000
    active = []
    while True:
        msg = read()
        if msg is None:
            return
        log(msg)
        method, params, mid = msg.get("method"), msg.get("params") or {}, msg.get("id")
        if method is None:
            continue  # a response to one of our requests
        if method == "textDocument/rename":
            continue  # left pending, as a long rename is: the client may cancel it
        result = None
        if method == "initialize":
            result = {
                "capabilities": {
                    "textDocumentSync": 1,
                    "hoverProvider": True,
                    "documentHighlightProvider": True,
                    "renameProvider": True,
                    "codeActionProvider": {"codeActionKinds": KINDS, "resolveProvider": True},
                    "inlineCompletionProvider": {},
                    "executeCommandProvider": {
                        "commands": ["smalltalk.adapters.list", "smalltalk.adapters.activate",
                                     "smalltalk.explain.show"]},
                },
                "serverInfo": {"name": "stub"},
            }
        elif method == "initialized":
            send({"jsonrpc": "2.0", "method": "smalltalk/status", "params": {
                "models": {"coder": "ready", "reasoner": "loading"},
                "names": {"coder": "qwen2.5-coder-0.5b", "reasoner": "qwen2.5-coder-1.5b"},
                "indexing": None, "adapters": active}})
        elif method == "shutdown":
            result = None
        elif method == "exit":
            return
        elif method == "textDocument/hover":
            result = {"contents": {"kind": "markdown", "value": "stub hover at line %d" %
                                   params["position"]["line"]}}
        elif method == "textDocument/documentHighlight":
            at = params["position"]
            result = [{"range": {"start": at, "end": {"line": at["line"],
                                                      "character": at["character"] + 1}}}]
        elif method == "textDocument/codeAction":
            only = (params.get("context") or {}).get("only") or KINDS
            uri = params["textDocument"]["uri"]
            line = params["range"]["start"]["line"]
            result = []
            for kind in KINDS:
                if kind in only:
                    # explain is left unresolved on purpose (no edit, no command): the client
                    # must resolve it.
                    action = {"title": kind.rsplit(".", 1)[1].title(), "kind": kind,
                              "data": {"uri": uri, "line": line}}
                    if kind == "refactor.smalltalk.comment":
                        action["edit"] = {"changes": {uri: [{
                            "range": {"start": {"line": line, "character": 0},
                                      "end": {"line": line, "character": 0}},
                            "newText": '"stub comment"\n'}]}}
                    result.append(action)
        elif method == "codeAction/resolve":
            result = dict(params)
            result["command"] = {"title": "show", "command": "smalltalk.explain.show",
                                 "arguments": [params["kind"], params.get("data")]}
        elif method == "workspace/executeCommand":
            command, args = params["command"], params.get("arguments") or []
            if command == "smalltalk.adapters.list":
                result = [dict(a, active=a["name"] in active) for a in ADAPTERS]
            elif command == "smalltalk.adapters.activate":
                active = [args[0]]
                send({"jsonrpc": "2.0", "method": "smalltalk/status",
                      "params": {"adapters": active}})
                result = True
            elif command == "smalltalk.explain.show":
                fd, path = tempfile.mkstemp(suffix=".md", prefix="explain-")
                with os.fdopen(fd, "w") as f:
                    f.write("# Explanation\n\n%s at line %s\n" % (args[0], args[1]["line"]))
                next_id += 1
                send({"jsonrpc": "2.0", "id": next_id, "method": "window/showDocument",
                      "params": {"uri": "file://" + path, "takeFocus": True}})
                result = None
        elif method == "textDocument/inlineCompletion":
            result = {"items": [{"insertText": "^ name"}]}
        if mid is not None:
            send({"jsonrpc": "2.0", "id": mid, "result": result})


if __name__ == "__main__":
    main()
