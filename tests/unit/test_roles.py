"""The application role's credentials, as `masking db upgrade` reads and stores them."""
import base64
import hashlib
import hmac

from bridge.store.roles import dsn_user, identifier, scram_verifier


def test_the_user_and_password_come_from_the_url_percent_decoded():
    assert dsn_user("postgresql://masking_app:p%40ss%3Aword@db:5432/masking") == ("masking_app", "p@ss:word")
    assert dsn_user("postgresql://masking_app@db/masking") == ("masking_app", None)
    assert dsn_user("postgresql://db/masking") == (None, None)


def test_the_scram_verifier_is_what_postgresql_stores_and_holds_no_password():
    salt = bytes(range(16))
    verifier = scram_verifier("s3cret", salt=salt)
    scheme, rest = verifier.split("$", 1)
    iterations_salt, keys = rest.split("$")
    iterations, salt_b64 = iterations_salt.split(":")
    stored_key, server_key = (base64.b64decode(k) for k in keys.split(":"))
    salted = hashlib.pbkdf2_hmac("sha256", b"s3cret", salt, 4096)
    assert (scheme, iterations, base64.b64decode(salt_b64)) == ("SCRAM-SHA-256", "4096", salt)
    assert stored_key == hashlib.sha256(hmac.new(salted, b"Client Key", hashlib.sha256).digest()).digest()
    assert server_key == hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    assert "s3cret" not in verifier and scram_verifier("s3cret") != scram_verifier("s3cret")  # salted


def test_a_role_name_is_quoted_as_one_identifier():
    assert identifier('masking"app; DROP ROLE x') == '"masking""app; DROP ROLE x"'
