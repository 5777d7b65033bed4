"""Specifications of real_net.certs: a CA-rooted chain that Go's TLS (etcdctl) and Python's ssl accept."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import os
import ssl
import stat
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.x509 import verification
from cryptography.x509.oid import ExtendedKeyUsageOID

from real_net import certs


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout=10))


@pytest.fixture(scope="module")
def cluster_certs(tmp_path_factory: pytest.TempPathFactory) -> certs.CertPaths:
    return certs.ensure_certs(tmp_path_factory.mktemp("certs"), ["n1", "n2", "n3"])


@pytest.fixture(scope="module")
def rogue_certs(tmp_path_factory: pytest.TempPathFactory) -> certs.CertPaths:
    """Certificates from another CA: same names, wrong issuer."""
    return certs.ensure_certs(tmp_path_factory.mktemp("rogue"), ["n1"])


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_member_and_client_certificates_are_signed_by_the_ca(cluster_certs: certs.CertPaths) -> None:
    ca = load(cluster_certs.ca)
    for pair in [*cluster_certs.members.values(), cluster_certs.client]:
        load(pair.cert).verify_directly_issued_by(ca)


def test_member_certificate_verifies_as_a_server_for_ip_and_localhost(cluster_certs: certs.CertPaths) -> None:
    store = verification.Store([load(cluster_certs.ca)])
    leaf = load(cluster_certs.member("n2").cert)
    for subject in (x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost"), x509.DNSName("n2")):
        chain = verification.PolicyBuilder().store(store).build_server_verifier(subject).verify(leaf, [])
        assert chain[-1] == load(cluster_certs.ca)


def test_member_and_client_certificates_verify_as_tls_clients(cluster_certs: certs.CertPaths) -> None:
    store = verification.Store([load(cluster_certs.ca)])
    verifier = verification.PolicyBuilder().store(store).build_client_verifier()
    for pair in (cluster_certs.member("n1"), cluster_certs.client):
        verifier.verify(load(pair.cert), [])


def test_extensions_are_what_go_tls_requires(cluster_certs: certs.CertPaths) -> None:
    ca = load(cluster_certs.ca)
    bc = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca
    assert ca.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    ca_ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    member = load(cluster_certs.member("n1").cert)
    eku = member.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert not member.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    san = member.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("127.0.0.1") in san.get_values_for_type(x509.IPAddress)
    assert {"localhost", "n1"} <= set(san.get_values_for_type(x509.DNSName))
    aki = member.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == ca_ski.digest
    member.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    client_eku = load(cluster_certs.client.cert).extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.CLIENT_AUTH in client_eku
    assert member.not_valid_before_utc < datetime.datetime.now(datetime.timezone.utc) < member.not_valid_after_utc


def test_private_keys_are_readable_by_the_owner_only(cluster_certs: certs.CertPaths) -> None:
    for key in (cluster_certs.ca_key, cluster_certs.member("n3").key, cluster_certs.client.key):
        assert stat.S_IMODE(os.stat(key).st_mode) == 0o600


def test_second_call_keeps_existing_files_and_adds_new_members(tmp_path: Path) -> None:
    first = certs.ensure_certs(tmp_path, ["n1"])
    before = {p: p.read_bytes() for p in (first.ca, first.ca_key, first.member("n1").cert, first.client.cert)}
    second = certs.ensure_certs(tmp_path, ["n1", "n4"])
    assert {p: p.read_bytes() for p in before} == before
    load(second.member("n4").cert).verify_directly_issued_by(load(first.ca))
    assert not list(tmp_path.glob("*.tmp"))


def test_reserved_member_names_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="reserved"):
        certs.ensure_certs(tmp_path, ["ca"])


async def handshake(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext) -> bytes:
    """Connect once, send a line, return what the server echoed (b"" if the server refused us)."""

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            writer.write(await reader.readline())
            await writer.drain()
        except (ssl.SSLError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_ctx)
        try:
            writer.write(b"hello\n")
            await writer.drain()
            return await reader.read(100)
        except (ssl.SSLError, ConnectionError):
            return b""
        finally:
            writer.close()
            try:
                await writer.wait_closed()
            except (ssl.SSLError, ConnectionError):
                pass
    finally:
        server.close()
        await server.wait_closed()


def test_mutual_tls_handshake_succeeds_between_members(cluster_certs: certs.CertPaths) -> None:
    got = run(handshake(certs.member_peer_server_context(cluster_certs, "n1"),
                        certs.member_peer_client_context(cluster_certs, "n2")))
    assert got == b"hello\n"


def test_peer_port_refuses_a_certificate_from_another_ca(
    cluster_certs: certs.CertPaths, rogue_certs: certs.CertPaths
) -> None:
    rogue = rogue_certs.member("n1")
    client_ctx = certs.peer_client_context(rogue.cert, rogue.key, cluster_certs.ca)  # trusts the real CA

    async def attempt() -> bytes:
        try:
            return await handshake(certs.member_peer_server_context(cluster_certs, "n1"), client_ctx)
        except (ssl.SSLError, ConnectionError):
            return b""

    assert run(attempt()) == b""


def test_peer_port_refuses_a_client_without_certificate(cluster_certs: certs.CertPaths) -> None:
    async def attempt() -> bytes:
        try:
            return await handshake(certs.member_peer_server_context(cluster_certs, "n1"),
                                   certs.client_context(cluster_certs.ca))
        except (ssl.SSLError, ConnectionError):
            return b""

    assert run(attempt()) == b""


def test_client_refuses_a_server_from_another_ca(
    cluster_certs: certs.CertPaths, rogue_certs: certs.CertPaths
) -> None:
    rogue = rogue_certs.member("n1")
    with pytest.raises(ssl.SSLCertVerificationError):
        run(handshake(certs.peer_server_context(rogue.cert, rogue.key, rogue_certs.ca),
                      certs.member_peer_client_context(cluster_certs, "n2")))


def test_client_port_needs_a_client_certificate_only_with_client_cert_auth(cluster_certs: certs.CertPaths) -> None:
    anonymous = certs.client_context(cluster_certs.ca)
    with_cert = certs.client_context(cluster_certs.ca, cluster_certs.client.cert, cluster_certs.client.key)
    open_port = certs.member_client_server_context(cluster_certs, "n1")
    strict = certs.member_client_server_context(cluster_certs, "n1", client_cert_auth=True)
    assert run(handshake(open_port, anonymous)) == b"hello\n"
    assert run(handshake(strict, with_cert)) == b"hello\n"

    async def attempt() -> bytes:
        try:
            return await handshake(strict, anonymous)
        except (ssl.SSLError, ConnectionError):
            return b""

    assert run(attempt()) == b""
