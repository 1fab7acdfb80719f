"""TLS certificate material and server contexts (chaos_upstream.tls.material, .contexts): every
handshake here runs between two ssl.SSLObjects over memory BIOs, so the certificates, ALPN, the
protocol versions, mTLS and the SNI switch are checked by OpenSSL itself, without a socket."""

from __future__ import annotations

import datetime
import ipaddress
import ssl

import pytest
from cryptography import x509

from chaos_upstream.tls.contexts import Contexts, protocol_mismatch_context, server_context
from chaos_upstream.tls.material import CLIENT_NAME, WRONG_NAME, Identity, Material, generate, write_ca

NOW = datetime.datetime.now(datetime.timezone.utc)


@pytest.fixture(scope="module")
def material() -> Material:
    return generate(now=NOW)


def client_context(material: Material, *, client: Identity | None = None, check_hostname: bool = True) -> ssl.SSLContext:
    """A client as a verifying proxy has it: trusting the CA, TLS 1.2 at least, h2 and http/1.1 offered."""
    context = ssl.create_default_context(cadata=material.ca_pem.decode())
    context.check_hostname = check_hostname
    context.set_alpn_protocols(["h2", "http/1.1"])
    if client is not None:
        client.install(context)
    return context


def handshake(server: ssl.SSLContext, client: ssl.SSLContext, hostname: str | None) -> tuple[ssl.SSLObject, ssl.SSLObject]:
    """Run a handshake in memory: the client and server ends once both are done; the client's error
    first if it has one (it is what a proxy would report), else the server's."""
    to_server, to_client = ssl.MemoryBIO(), ssl.MemoryBIO()
    ends = {"client": client.wrap_bio(to_client, to_server, server_hostname=hostname),
            "server": server.wrap_bio(to_server, to_client, server_side=True)}
    done: set[str] = set()
    errors: dict[str, ssl.SSLError] = {}
    for _ in range(10):
        for side, end in ends.items():
            if side in done or side in errors:
                continue
            try:
                end.do_handshake()
                done.add(side)
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLError as exc:
                errors[side] = exc
        if len(done) + len(errors) == 2 or not (to_server.pending or to_client.pending):
            break
    if errors:
        raise errors.get("client") or errors["server"]
    return ends["client"], ends["server"]


def san(certificate: dict) -> list[tuple[str, str]]:
    return list(certificate["subjectAltName"])


def test_server_certificate_names_ip_as_ip_san_and_the_rest_as_dns(material: Material) -> None:
    leaf = x509.load_pem_x509_certificate(material.server.chain_pem)
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["localhost"]
    assert names.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]


@pytest.mark.parametrize("hostname", ["localhost", "127.0.0.1"])
def test_a_client_trusting_the_ca_completes_the_handshake_with_alpn_h2(material: Material, hostname: str) -> None:
    client, server = handshake(server_context(material.server), client_context(material), hostname)
    assert client.selected_alpn_protocol() == server.selected_alpn_protocol() == "h2"
    assert client.version() == "TLSv1.3"


def test_a_client_offering_only_http11_gets_http11(material: Material) -> None:
    context = client_context(material)
    context.set_alpn_protocols(["http/1.1"])
    client, server = handshake(server_context(material.server), context, "localhost")
    assert client.selected_alpn_protocol() == server.selected_alpn_protocol() == "http/1.1"


def test_the_ca_written_out_is_what_a_client_trusts(material: Material, tmp_path) -> None:
    path = tmp_path / "ca.pem"
    write_ca(material, path)
    client = ssl.create_default_context(cafile=str(path))
    handshake(server_context(material.server), client, "localhost")


def test_the_users_own_files_are_presented(material: Material, tmp_path) -> None:
    own = generate(["own.example"], now=NOW)
    (tmp_path / "cert.pem").write_bytes(own.server.chain_pem)
    (tmp_path / "key.pem").write_bytes(own.server.key_pem)
    mine = generate(now=NOW, server=Identity.from_files(tmp_path / "cert.pem", tmp_path / "key.pem"))
    client = ssl.create_default_context(cadata=own.ca_pem.decode())
    _, server = handshake(server_context(mine.server), client, "own.example")
    assert server.version() == "TLSv1.3"


@pytest.mark.parametrize(("fault", "reason"), [
    ("expired", "certificate has expired"),
    ("wrong_name", "Hostname mismatch, certificate is not valid for 'localhost'"),
    ("untrusted", "self-signed certificate"),
])
def test_each_fault_certificate_fails_verification_for_its_own_reason(material: Material, fault: str, reason: str) -> None:
    with pytest.raises(ssl.SSLCertVerificationError, match="CERTIFICATE_VERIFY_FAILED") as failure:
        handshake(server_context(getattr(material, fault)), client_context(material), "localhost")
    assert failure.value.verify_message.startswith(reason)


def test_the_expired_certificate_ended_before_now_and_is_signed_by_the_ca(material: Material) -> None:
    leaf = x509.load_pem_x509_certificate(material.expired.chain_pem)
    ca = x509.load_pem_x509_certificate(material.ca_pem)
    assert leaf.not_valid_after_utc < NOW - datetime.timedelta(hours=23)
    assert leaf.issuer == ca.subject
    leaf.verify_directly_issued_by(ca)


def test_the_untrusted_certificate_is_signed_by_itself_for_the_right_names(material: Material) -> None:
    leaf = x509.load_pem_x509_certificate(material.untrusted.chain_pem)
    leaf.verify_directly_issued_by(leaf)
    client = client_context(material)
    client.load_verify_locations(cadata=material.untrusted.chain_pem.decode())  # trusted, it passes
    handshake(server_context(material.untrusted), client, "localhost")


def test_the_wrong_name_fault_presents_the_certificate_for_another_name(material: Material) -> None:
    contexts = Contexts(material)
    client, _ = handshake(contexts.for_fault("wrong-name"), client_context(material, check_hostname=False), "localhost")
    assert san(client.getpeercert()) == [("DNS", WRONG_NAME)]


def test_no_fault_a_context_makes_keeps_the_servers_certificate(material: Material) -> None:
    contexts = Contexts(material)
    for fault in (None, "valid", "handshake-stall"):
        client, _ = handshake(contexts.for_fault(fault), client_context(material, check_hostname=False), "localhost")
        assert san(client.getpeercert()) == [("DNS", "localhost"), ("IP Address", "127.0.0.1")]


def test_the_expired_certificate_fails_as_expired(material: Material) -> None:
    contexts = Contexts(material)
    with pytest.raises(ssl.SSLCertVerificationError) as failure:
        handshake(contexts.for_fault("expired-certificate"), client_context(material, check_hostname=False), "localhost")
    assert failure.value.verify_message == "certificate has expired"


def test_the_protocol_mismatch_offers_only_tls_1_0_and_1_1(material: Material) -> None:
    with pytest.raises(ssl.SSLError, match="TLSV1_ALERT_PROTOCOL_VERSION"):
        handshake(protocol_mismatch_context(material.server), client_context(material), "localhost")
    old = client_context(material)
    old.set_ciphers("DEFAULT:@SECLEVEL=0")
    with pytest.warns(DeprecationWarning):
        old.minimum_version = ssl.TLSVersion.TLSv1
    client, _ = handshake(protocol_mismatch_context(material.server), old, "localhost")
    assert client.version() == "TLSv1.1"  # it does speak TLS, only an old one


def test_the_protocol_mismatch_scenario_gets_its_context(material: Material) -> None:
    with pytest.raises(ssl.SSLError, match="TLSV1_ALERT_PROTOCOL_VERSION"):
        handshake(Contexts(material).for_fault("protocol-mismatch"), client_context(material), "localhost")


def test_mtls_refuses_a_client_without_a_certificate(material: Material) -> None:
    required = Contexts(material).for_fault("client-certificate-required")
    with pytest.raises(ssl.SSLError, match="PEER_DID_NOT_RETURN_A_CERTIFICATE"):
        handshake(required, client_context(material), "localhost")


def test_mtls_accepts_a_client_certificate_signed_by_the_client_ca(material: Material) -> None:
    required = Contexts(material).for_fault("client-certificate-required")
    _, server = handshake(required, client_context(material, client=material.client), "localhost")
    assert dict(rdn[0] for rdn in server.getpeercert()["subject"])["commonName"] == CLIENT_NAME


def test_a_client_ca_given_makes_every_context_require_its_certificates(material: Material) -> None:
    other = generate(now=NOW)
    contexts = Contexts(material, client_ca=other.ca_pem)
    with pytest.raises(ssl.SSLError, match="CERTIFICATE_VERIFY_FAILED"):  # signed by a CA it does not trust
        handshake(contexts.for_fault(None), client_context(material, client=material.client), "localhost")
    _, server = handshake(contexts.for_fault(None), client_context(material, client=other.client), "localhost")
    assert server.getpeercert()["subject"]
