"""The embedded DNS server's answers (pure): a query for a name the network knows gets an
authoritative answer (``A`` and, on IPv6 networks, ``AAAA`` records; an empty answer for
other types of a known name, as dockerd's resolver gives); anything else is for the upstream
servers.
Messages are parsed and built with dnspython."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import dns.exception
import dns.flags
import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

#: dockerd's embedded DNS TTL for container records.
TTL = 600


def _key(name: dns.name.Name) -> str:
    return name.to_text(omit_final_dot=True).lower()


def answer(
    wire: bytes, resolve: Callable[[str], Sequence[str] | None]
) -> tuple[bytes | None, bool]:
    """(reply, forward): the reply for a name ``resolve`` knows (its IPv4 addresses, or
    None when unknown); ``forward`` when the query is for the upstream servers; (None,
    False) for a message that is not a query (dropped)."""
    try:
        query = dns.message.from_wire(wire)
    except dns.exception.DNSException:
        return None, False
    if query.flags & dns.flags.QR or len(query.question) != 1:
        return None, False
    question = query.question[0]
    if question.rdclass != dns.rdataclass.IN:
        return None, True
    addresses = resolve(_key(question.name))
    if addresses is None:
        return None, True
    reply = dns.message.make_response(query)
    reply.flags |= dns.flags.AA
    wanted = {dns.rdatatype.A: ("A", False), dns.rdatatype.AAAA: ("AAAA", True)}
    if question.rdtype in wanted:
        rdtype, v6 = wanted[question.rdtype]
        matching = [a for a in addresses if (":" in a) == v6]
        if matching:
            reply.answer.append(
                dns.rrset.from_text_list(question.name, TTL, "IN", rdtype, matching)
            )
    return reply.to_wire(), False


def failure(wire: bytes) -> bytes | None:
    """A SERVFAIL reply to ``wire`` (when no upstream answered)."""
    try:
        query = dns.message.from_wire(wire)
    except dns.exception.DNSException:
        return None
    reply = dns.message.make_response(query)
    reply.set_rcode(dns.rcode.SERVFAIL)
    return reply.to_wire()
