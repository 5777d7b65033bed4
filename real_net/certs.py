"""Certificates for a local cluster: one CA, a certificate per member, one client certificate.

Why this module exists: etcd's own quick starts ask the operator to run cfssl by
hand before a TLS cluster can start; ``raftkv cluster`` instead makes a private
CA on its first run (issue 9), so mutual TLS between peers and TLS for clients
are on by default and ``etcdctl --cacert/--cert/--key`` work at once.

What the files must satisfy (Go's crypto/x509, which etcdctl 3.4 uses):

* the CA has ``basicConstraints CA:TRUE`` (critical) and the ``keyCertSign``
  key usage, or Go refuses it as an issuer;
* member certificates are used both ways on the peer port (etcd's peer TLS is
  mutual: a member is a server to its peers and a client when it dials them),
  so they carry the ``serverAuth`` *and* ``clientAuth`` extended key usages;
  their subjectAltName lists ``127.0.0.1``, ``localhost`` and the member name,
  since Go ignores the common name for host checks;
* the client certificate carries ``clientAuth``;
* every certificate has a SubjectKeyIdentifier and, for the leaves, the
  AuthorityKeyIdentifier of the CA, so chain building never has to guess.

Files are generated only when missing (existing ones are kept, so restarting a
cluster keeps its CA); private keys are written with mode 0600, every file is
written to a temporary name and renamed, so a crash never leaves half a PEM.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_NAME = "ca"
CLIENT_NAME = "client"
DEFAULT_HOSTS: tuple[str, ...] = ("127.0.0.1", "localhost")
VALIDITY = datetime.timedelta(days=3650)
# Issue certificates a little in the past so a member whose clock lags the
# generating machine's does not reject them as "not yet valid".
BACKDATE = datetime.timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class KeyPair:
    """A PEM certificate and its PEM private key, as file paths."""

    cert: Path
    key: Path


@dataclass(frozen=True, slots=True)
class CertPaths:
    """Where ``ensure_certs`` put everything (etcd's --trusted-ca-file, --cert-file, --key-file)."""

    ca: Path  # the CA certificate: --trusted-ca-file / --peer-trusted-ca-file / etcdctl --cacert
    ca_key: Path
    members: dict[str, KeyPair]  # member name -> its certificate (server and client use)
    client: KeyPair  # for etcdctl --cert/--key and the test clients

    def member(self, name: str) -> KeyPair:
        try:
            return self.members[name]
        except KeyError:
            raise KeyError(f"no certificate for member {name!r} (have: {sorted(self.members)})") from None


# --------------------------------------------------------------- generation


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(tmp, mode)  # O_CREAT's mode is masked by the umask; keys must be exactly 0600
    os.replace(tmp, path)


def _write_pair(pair: KeyPair, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    _write_atomic(pair.key, key_pem, 0o600)
    _write_atomic(pair.cert, cert.public_bytes(serialization.Encoding.PEM), 0o644)


def _load_pair(pair: KeyPair) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert = x509.load_pem_x509_certificate(pair.cert.read_bytes())
    key = serialization.load_pem_private_key(pair.key.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{pair.key}: expected an EC private key, got {type(key).__name__}")
    return cert, key


def _make_ca(common_name: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _new_key()
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "raftkv"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = _now()
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _san_entry(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _make_leaf(
    common_name: str,
    hosts: Iterable[str],
    usages: list[x509.ObjectIdentifier],
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _new_key()
    now = _now()
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "raftkv"),
                                 x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(min(now + VALIDITY, ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
    )
    names = list(dict.fromkeys(hosts))  # keep order, drop duplicates
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName([_san_entry(h) for h in names]), critical=False)
    return builder.sign(ca_key, hashes.SHA256()), key


def ensure_certs(
    directory: str | os.PathLike[str],
    member_names: Iterable[str],
    *,
    hosts: Iterable[str] = DEFAULT_HOSTS,
) -> CertPaths:
    """Make (first run only) the CA, one certificate per member and a client certificate in `directory`.

    Files already present are kept, not regenerated: a member added later gets a
    new certificate from the existing CA. Each member certificate names
    `hosts` plus the member's own name in its subjectAltName.
    """
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    hosts = tuple(hosts)
    ca = KeyPair(d / f"{CA_NAME}.pem", d / f"{CA_NAME}-key.pem")
    if ca.cert.exists() and ca.key.exists():
        ca_cert, ca_key = _load_pair(ca)
    elif ca.cert.exists() or ca.key.exists():
        raise FileExistsError(f"{d}: found only one of {ca.cert.name} and {ca.key.name}; remove it or supply both")
    else:
        ca_cert, ca_key = _make_ca("raftkv cluster CA")
        _write_pair(ca, ca_cert, ca_key)

    def ensure_leaf(name: str, sans: Iterable[str], usages: list[x509.ObjectIdentifier]) -> KeyPair:
        pair = KeyPair(d / f"{name}.pem", d / f"{name}-key.pem")
        if not (pair.cert.exists() and pair.key.exists()):
            cert, key = _make_leaf(name, sans, usages, ca_cert, ca_key)
            _write_pair(pair, cert, key)
        return pair

    both = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    members = {}
    for name in member_names:
        if name in (CA_NAME, CLIENT_NAME):
            raise ValueError(f"member name {name!r} is reserved for the {name} certificate files")
        members[name] = ensure_leaf(name, (*hosts, name), both)
    # A subjectAltName on the client certificate too: strict verifiers (RFC 5280 profiles) want one.
    client = ensure_leaf(CLIENT_NAME, (CLIENT_NAME,), [ExtendedKeyUsageOID.CLIENT_AUTH])
    return CertPaths(ca=ca.cert, ca_key=ca.key, members=members, client=client)


# --------------------------------------------------------------- SSL contexts


def _base(ctx: ssl.SSLContext) -> ssl.SSLContext:
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2  # etcd's default minimum (Go's tls.VersionTLS12)
    return ctx


def peer_server_context(cert: str | os.PathLike[str], key: str | os.PathLike[str],
                        trusted_ca: str | os.PathLike[str]) -> ssl.SSLContext:
    """The peer port's context: mutual TLS, a peer must present a certificate signed by `trusted_ca`.

    etcd's peer port always verifies client certificates when --peer-trusted-ca-file
    is given (--peer-client-cert-auth); here it is not optional.
    """
    ctx = _base(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER))
    ctx.load_cert_chain(os.fspath(cert), os.fspath(key))
    ctx.load_verify_locations(os.fspath(trusted_ca))
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def peer_client_context(cert: str | os.PathLike[str], key: str | os.PathLike[str],
                        trusted_ca: str | os.PathLike[str]) -> ssl.SSLContext:
    """The context a member dials its peers with: presents its own certificate, verifies theirs."""
    ctx = _base(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT))  # check_hostname and CERT_REQUIRED by default
    ctx.load_cert_chain(os.fspath(cert), os.fspath(key))
    ctx.load_verify_locations(os.fspath(trusted_ca))
    return ctx


def client_server_context(cert: str | os.PathLike[str], key: str | os.PathLike[str],
                          trusted_ca: str | os.PathLike[str] | None = None,
                          client_cert_auth: bool = False) -> ssl.SSLContext:
    """The client port's context; with `client_cert_auth` (etcd's --client-cert-auth) a client
    without a certificate signed by `trusted_ca` cannot connect."""
    ctx = _base(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER))
    ctx.load_cert_chain(os.fspath(cert), os.fspath(key))
    if client_cert_auth:
        if trusted_ca is None:
            raise ValueError("client_cert_auth needs trusted_ca (etcd: --client-cert-auth needs --trusted-ca-file)")
        ctx.load_verify_locations(os.fspath(trusted_ca))
        ctx.verify_mode = ssl.CERT_REQUIRED
    elif trusted_ca is not None:
        # As etcd: a trusted CA without --client-cert-auth still checks a certificate a client offers.
        ctx.load_verify_locations(os.fspath(trusted_ca))
        ctx.verify_mode = ssl.CERT_OPTIONAL
    return ctx


def client_context(trusted_ca: str | os.PathLike[str], cert: str | os.PathLike[str] | None = None,
                   key: str | os.PathLike[str] | None = None) -> ssl.SSLContext:
    """A client's context (etcdctl's --cacert, --cert, --key)."""
    ctx = _base(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT))
    ctx.load_verify_locations(os.fspath(trusted_ca))
    if cert is not None:
        ctx.load_cert_chain(os.fspath(cert), None if key is None else os.fspath(key))
    return ctx


# Conveniences over CertPaths for one member of a generated cluster.


def member_peer_server_context(paths: CertPaths, name: str) -> ssl.SSLContext:
    pair = paths.member(name)
    return peer_server_context(pair.cert, pair.key, paths.ca)


def member_peer_client_context(paths: CertPaths, name: str) -> ssl.SSLContext:
    pair = paths.member(name)
    return peer_client_context(pair.cert, pair.key, paths.ca)


def member_client_server_context(paths: CertPaths, name: str, client_cert_auth: bool = False) -> ssl.SSLContext:
    pair = paths.member(name)
    return client_server_context(pair.cert, pair.key, paths.ca, client_cert_auth)
