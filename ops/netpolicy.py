"""Which network addresses the pipeline may fetch from: shared by the crawl's URL policy and the downloader.

Anything outside global unicast space (loopback, private, link-local, reserved, multicast, unspecified, shared
address space) is refused unless a configured network admits it; the demo admits 127.0.0.0/8 for its sample web.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


class AddressPolicy:
    """Decides whether an IP address may be contacted."""

    def __init__(self, allow_networks: Iterable[str] = ()) -> None:
        self.allow_networks = tuple(allow_networks)
        self._allow = tuple(ipaddress.ip_network(net, strict=False) for net in self.allow_networks)

    def is_blocked(self, ip: IPAddress) -> bool:
        """True for addresses outside global unicast space, unless an allowed network covers them.

        An IPv6 address that carries an IPv4 address (mapped, 6to4, NAT64) is judged by the IPv4 address it
        reaches.
        """
        if any(ip in net for net in self._allow):
            return False
        if isinstance(ip, ipaddress.IPv6Address):
            embedded = ip.ipv4_mapped or ip.sixtofour
            if embedded is None and ip in _NAT64:
                embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
            if embedded is not None:
                return self.is_blocked(embedded)
        return (
            not ip.is_global
            or ip.is_private
            or ip.is_loopback
            or ip.is_link_local
            or ip.is_reserved
            or ip.is_multicast
            or ip.is_unspecified
        )
