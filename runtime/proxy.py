"""Port publishing (`-p [IP:]HOST:CONTAINER[/tcp|udp]`) with a userspace proxy, as Docker's
docker-proxy does: listen on the host side, forward each connection or datagram to the container."""

from __future__ import annotations

import socket
import threading
from typing import Callable, Sequence

from runtime.errors import NetworkError
from runtime.spec import PortMapping

UDP_IDLE_SECONDS = 30


class PortProxy:
    """Binds every mapping at once (a taken port is an error before the container starts)."""

    def __init__(self, ports: Sequence[PortMapping], target_ip: str) -> None:
        self.target_ip = target_ip
        self.sockets: list[socket.socket] = []
        self.closed = threading.Event()
        try:
            for p in ports:
                kind = socket.SOCK_STREAM if p.protocol == "tcp" else socket.SOCK_DGRAM
                s = socket.socket(socket.AF_INET, kind)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind((p.host_ip, p.host_port))
                self.sockets.append(s)
                target: Callable[[socket.socket, int], None]
                if kind == socket.SOCK_STREAM:
                    s.listen(128)
                    target = self._tcp
                else:
                    target = self._udp
                threading.Thread(target=target, args=(s, p.container_port), daemon=True).start()
        except OSError as exc:
            self.close()
            raise NetworkError(f"cannot publish port {p.host_ip}:{p.host_port}/{p.protocol}: {exc.strerror}",
                               hint="pick another host port") from None

    def close(self) -> None:
        self.closed.set()
        for s in self.sockets:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def _tcp(self, listener: socket.socket, port: int) -> None:
        while not self.closed.is_set():
            try:
                client, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=self._connect, args=(client, port), daemon=True).start()

    def _connect(self, client: socket.socket, port: int) -> None:
        try:
            upstream = socket.create_connection((self.target_ip, port), timeout=5)
            upstream.settimeout(None)
        except OSError:
            client.close()
            return
        back = threading.Thread(target=_pipe, args=(upstream, client), daemon=True)
        back.start()
        _pipe(client, upstream)
        back.join()
        client.close()
        upstream.close()

    def _udp(self, sock: socket.socket, port: int) -> None:
        peers: dict[tuple[str, int], socket.socket] = {}
        while not self.closed.is_set():
            try:
                data, addr = sock.recvfrom(65535)
            except OSError:
                return
            up = peers.get(addr)
            if up is None:
                up = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                up.connect((self.target_ip, port))
                peers[addr] = up
                threading.Thread(target=self._udp_back, args=(sock, up, addr, peers), daemon=True).start()
            up.send(data)

    def _udp_back(self, sock: socket.socket, up: socket.socket, addr: tuple[str, int],
                  peers: dict[tuple[str, int], socket.socket]) -> None:
        up.settimeout(UDP_IDLE_SECONDS)
        try:
            while not self.closed.is_set():
                sock.sendto(up.recv(65535), addr)
        except OSError:
            pass
        finally:
            peers.pop(addr, None)
            up.close()


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    """Copy until EOF, then pass the EOF on."""
    try:
        while data := src.recv(65536):
            dst.sendall(data)
        dst.shutdown(socket.SHUT_WR)
    except OSError:
        pass
