"""What answers instead of a cloud behind a Wi-Fi login or a failing proxy: an HTML page on a loopback port,
whatever was asked (a captive portal answers every request with its login page)."""

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PAGE = b"<!doctype html>\n<html lang=en><title>Log in to Guest Wi-Fi</title><form>...</form></html>\n"


class WebPage(BaseHTTPRequestHandler):
    """The login page, with `status` (200: a captive portal; 500: a proxy's error page)."""

    status = 200

    def answer(self):
        self.send_response(self.status)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = answer

    def log_message(self, *args):
        pass


@contextmanager
def web_page(status: int = 200) -> Iterator[str]:
    """The page served on a loopback port while the block runs: its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), type("Page", (WebPage,), {"status": status}))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
