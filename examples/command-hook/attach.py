"""A completion hook as a command, for the local server (docs/hook.md): the event on stdin, the answer on stdout.

    CHUNKED_UPLOAD_COMPLETION_HOOK='cmd:python3 examples/command-hook/attach.py' make run
"""

import json
import sys

event = json.load(sys.stdin)
print(json.dumps({"attachment_id": "att-" + event["upload_id"], "by": event["caller"]["sub"]}))
