"""Serves a directory over HTTPS on 127.0.0.1 (an ephemeral port): a JWKS endpoint
behind TLS, as an IdP's is.

Usage: serve_tls.py DIR CERT_DIR    (CERT_DIR holds tls.crt and tls.key)

Prints "Serving HTTPS on 127.0.0.1 port N" once listening.
"""

import functools
import http.server
import ssl
import sys


def main():
    directory, cert_dir = sys.argv[1:3]
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=directory)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(f"{cert_dir}/tls.crt", f"{cert_dir}/tls.key")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    print(f"Serving HTTPS on 127.0.0.1 port {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
