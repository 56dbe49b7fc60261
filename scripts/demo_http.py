#!/usr/bin/env python3
"""HTTP side of scripts/demo: what the dashboard's backend does, with the standard library only.

Usage: demo_http.py file BASE TOKEN KEY EMAIL NAME CATEGORY MESSAGE
           -> POST BASE/api/v1/requests; prints the status and the JSON answer
       demo_http.py get URL   -> prints the status and the body (for /healthz, /metrics)
"""
import json
import sys
import urllib.error
import urllib.request


def call(request):
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def file_request(base, token, key, email, name, category, message):
    body = {
        "email": email,
        "name": name,
        "category": category,
        "message": message,
        "locale": "fr",
        "project_url": "https://app.chatim.app/p/boulangerie",
        "browser": "Firefox 140 sur Linux",
        "page_url": "https://app.chatim.app/support",
        "account": {"plan": "Pro", "company": "Boulangerie Martin", "customer_since": "2024-03"},
    }
    request = urllib.request.Request(
        f"{base}/api/v1/requests",
        data=json.dumps(body).encode(),
        method="POST",
        headers={
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            "Idempotency-Key": key,
        },
    )
    status, text = call(request)
    print(status)
    print(json.dumps(json.loads(text), ensure_ascii=False, indent=2))
    if status != 201:
        sys.exit(f"the request was not filed ({status})")


def main():
    if len(sys.argv) == 9 and sys.argv[1] == "file":
        file_request(*sys.argv[2:])
    elif len(sys.argv) == 3 and sys.argv[1] == "get":
        status, text = call(urllib.request.Request(sys.argv[2]))
        print(status)
        print(text, end="")
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
