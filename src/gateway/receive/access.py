"""Who may associate: calling-AE allow-list, host check, per-AE and total association limits."""

from __future__ import annotations

import ipaddress
import socket
import threading
from dataclasses import dataclass

from ..config import DicomSettings

__all__ = ["AccessDecision", "AccessPolicy"]


@dataclass(frozen=True)
class AccessDecision:
    """Outcome of an access check: accepted, or rejected with a reason."""

    accepted: bool
    reason: str | None = None
    transient: bool = False
    kind: str | None = None  # a gateway.metrics.RefusalReason value


def _addresses(host: str) -> set[str]:
    try:
        return {str(ipaddress.ip_address(host))}
    except ValueError:
        pass
    try:
        return {str(info[4][0]) for info in socket.getaddrinfo(host, None)}
    except OSError:
        return set()


class AccessPolicy:
    """Decides on association requests and counts active associations per calling AE.

    Parameters
    ----------
    settings : DicomSettings
        ``allowed_aes`` (AE title, optional host, optional limit), ``accept_any_ae``,
        ``max_associations_per_ae`` and ``max_associations`` (all AEs together).
    """

    def __init__(self, settings: DicomSettings) -> None:
        self._settings = settings
        self._allowed = {entry.ae_title: entry for entry in settings.allowed_aes}
        self._active: dict[str, int] = {}
        self._lock = threading.Lock()
        self._resolved: dict[str, set[str]] = {}
        self._pinned = {a for e in settings.allowed_aes if e.host for a in _addresses(e.host)}
        self._networks = [ipaddress.ip_network(n, strict=False) for n in settings.trusted_networks]

    def trusted_address(self, peer_host: str) -> bool:
        """Whether ``peer_host`` may use the reserved pre-association capacity.

        Addresses of allowed AEs pinned to a host, and ``dicom.trusted_networks``.
        """
        try:
            address = ipaddress.ip_address(peer_host)
        except ValueError:
            return False
        return str(address) in self._pinned or any(address in n for n in self._networks)

    def _host_matches(self, expected: str, peer: str) -> bool:
        if expected not in self._resolved:
            self._resolved[expected] = _addresses(expected)
        try:
            peer = str(ipaddress.ip_address(peer))
        except ValueError:
            return False
        return peer in self._resolved[expected]

    def admit(
        self, calling_ae: str, peer_host: str, certificate_names: frozenset[str] | None = None
    ) -> AccessDecision:
        """Check a request and, if accepted, count it against the AE's limit.

        ``certificate_names`` are the subject CN and subject alternative names of the
        peer's TLS certificate (None without TLS); an allowed AE with a
        ``certificate_name`` must present a certificate that names it.

        Every accepted decision must be matched by one :meth:`release`.
        """
        ae = calling_ae.strip()
        entry = self._allowed.get(ae)
        if entry is None and not self._settings.accept_any_ae:
            return AccessDecision(
                False, f"calling AE {ae!r} is not in dicom.allowed_aes", kind="calling-ae"
            )
        if entry is not None and entry.host and not self._host_matches(entry.host, peer_host):
            return AccessDecision(
                False,
                f"calling AE {ae!r} must connect from {entry.host}, not {peer_host}",
                kind="host",
            )
        if (
            entry is not None
            and entry.certificate_name
            and (certificate_names is None or entry.certificate_name not in certificate_names)
        ):
            return AccessDecision(
                False,
                f"calling AE {ae!r} must present a TLS certificate for {entry.certificate_name!r}",
                kind="certificate",
            )
        limit = (entry.max_associations if entry and entry.max_associations else None) or (
            self._settings.max_associations_per_ae
        )
        with self._lock:
            total = sum(self._active.values())
            if total >= self._settings.max_associations:
                return AccessDecision(
                    False,
                    f"the listener already has {total} associations "
                    f"(limit {self._settings.max_associations})",
                    transient=True,
                    kind="limit",
                )
            active = self._active.get(ae, 0)
            if active >= limit:
                return AccessDecision(
                    False,
                    f"calling AE {ae!r} already has {active} associations (limit {limit})",
                    transient=True,
                    kind="limit",
                )
            self._active[ae] = active + 1
        return AccessDecision(True)

    def release(self, calling_ae: str) -> None:
        """Forget one active association of ``calling_ae``."""
        ae = calling_ae.strip()
        with self._lock:
            count = self._active.get(ae, 0) - 1
            if count > 0:
                self._active[ae] = count
            else:
                self._active.pop(ae, None)

    def active(self) -> dict[str, int]:
        """Active associations per calling AE."""
        with self._lock:
            return dict(self._active)
