"""SigV4 signing against the worked examples of Amazon's S3 documentation ("Signature
Calculations for the Authorization Header: Transferring Payload in a Single Chunk" and
"Authenticating Requests: Using Query Parameters"), which use these example credentials."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from imagegate.blobs.sigv4 import (
    EMPTY_SHA256,
    Credentials,
    canonical_query,
    presign,
    quote_key,
    sign,
)

EXAMPLE = Credentials("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
HOST = "examplebucket.s3.amazonaws.com"
WHEN = datetime(2013, 5, 24, tzinfo=UTC)


def signature(headers: dict[str, str]) -> str:
    return headers["authorization"].rsplit("Signature=", 1)[1]


def test_a_get_with_a_range_header_signs_as_amazons_example() -> None:
    headers = sign("GET", HOST, "/test.txt", {}, {"Range": "bytes=0-9"}, EMPTY_SHA256, EXAMPLE,
                   "us-east-1", WHEN)
    assert headers["authorization"] == (
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
        "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
        "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41")
    assert headers["x-amz-date"] == "20130524T000000Z"
    assert "x-amz-security-token" not in headers


def test_a_bucket_listing_signs_its_sorted_query_as_amazons_example() -> None:
    headers = sign("GET", HOST, "/", {"prefix": "J", "max-keys": "2"}, {}, EMPTY_SHA256,
                   EXAMPLE, "us-east-1", WHEN)
    assert signature(headers) == \
        "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"


def test_a_put_signs_its_payload_hash_and_extra_headers_as_amazons_example() -> None:
    payload = "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072"
    headers = sign("PUT", HOST, "/test%24file.text", {},
                   {"Date": "Fri, 24 May 2013 00:00:00 GMT",
                    "x-amz-storage-class": "REDUCED_REDUNDANCY"}, payload, EXAMPLE,
                   "us-east-1", WHEN)
    assert signature(headers) == \
        "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd"


def test_a_presigned_get_matches_amazons_example() -> None:
    query = presign("GET", HOST, "/test.txt", EXAMPLE, "us-east-1", WHEN, 86400)
    assert query == (
        "X-Amz-Algorithm=AWS4-HMAC-SHA256"
        "&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request"
        "&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host"
        "&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404")


def test_temporary_credentials_sign_their_session_token() -> None:
    temporary = Credentials(EXAMPLE.access_key_id, EXAMPLE.secret_access_key, "token/+=")
    headers = sign("GET", HOST, "/test.txt", {}, {}, EMPTY_SHA256, temporary, "us-east-1", WHEN)
    assert headers["x-amz-security-token"] == "token/+="
    assert "x-amz-security-token;" not in headers["authorization"]  # it is the last name
    assert headers["authorization"].split("SignedHeaders=")[1].startswith(
        "host;x-amz-content-sha256;x-amz-date;x-amz-security-token,")
    query = presign("GET", HOST, "/test.txt", temporary, "us-east-1", WHEN, 60)
    assert "&X-Amz-Security-Token=token%2F%2B%3D&" in query


@pytest.mark.parametrize("expires_s", [0, -1, 7 * 86400 + 1])
def test_a_presigned_url_lives_one_second_to_seven_days(expires_s: int) -> None:
    with pytest.raises(ValueError, match="1 to 604800 s"):
        presign("GET", HOST, "/test.txt", EXAMPLE, "us-east-1", WHEN, expires_s)


def test_keys_and_queries_are_encoded_as_s3_canonicalises_them() -> None:
    assert quote_key("/pre fix/ü~a+b=c.png") == "/pre%20fix/%C3%BC~a%2Bb%3Dc.png"
    assert canonical_query({"prefix": "a/b c", "list-type": "2", "delete": ""}) == \
        "delete=&list-type=2&prefix=a%2Fb%20c"


def test_credentials_never_show_their_secrets() -> None:
    shown = repr(Credentials("AKIDEXAMPLE", "very-secret", "session-secret"))
    assert "AKIDEXAMPLE" in shown and "secret" not in shown
