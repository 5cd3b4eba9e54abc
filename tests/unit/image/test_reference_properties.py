"""Property tests of reference parsing: any text gives a Reference or the domain error
(InvalidParameter, a 400), never another exception; what parses formats back to itself."""

from __future__ import annotations

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from whaled.errors import InvalidParameter
from whaled.image import reference as r

PROPS = settings(max_examples=400, deadline=None)

_ALNUM = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=6)
_SEP = st.sampled_from([".", "_", "__", "-", "--"])
_COMPONENT = st.builds(
    lambda first, rest: first + "".join(s + a for s, a in rest),
    _ALNUM,
    st.lists(st.tuples(_SEP, _ALNUM), max_size=2),
)
_PATH = st.lists(_COMPONENT, min_size=1, max_size=3).map("/".join)
_DOMAIN = st.sampled_from(
    ["", "docker.io/", "index.docker.io/", "localhost/", "localhost:5000/", "example.com/",
     "a.b.c:443/", "[::1]:5000/", "Host/"]
)  # fmt: skip
_TAG = st.one_of(
    st.none(),
    st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}", fullmatch=True),
)
_HEX = st.text(alphabet="0123456789abcdef", min_size=64, max_size=64)
_DIGEST = st.one_of(st.none(), _HEX.map(lambda h: "sha256:" + h))


@st.composite
def valid_names(draw: st.DrawFn) -> str:
    domain, path = draw(_DOMAIN), draw(_PATH)
    if not domain and "." in path.split("/")[0] and "/" in path:
        path = "x" + path.replace(".", "_")  # else its first component reads as a domain
    text = domain + path
    tag = draw(_TAG)
    digest = draw(_DIGEST)
    if tag is not None:
        text += ":" + tag
    if digest is not None:
        text += "@" + digest
    return text


@PROPS
@given(st.one_of(st.text(max_size=80), st.text(alphabet="aZ09:/@._-[]", max_size=80)))
def test_any_text_parses_or_raises_the_domain_error(text: str) -> None:
    for fn in (r.parse_normalized_named, r.normalize, r.parse_any, r.parse):
        try:
            out = fn(text)
        except InvalidParameter:
            continue
        assert isinstance(out, r.Reference | r.ImageIDRef)


@PROPS
@given(valid_names())
def test_parse_format_round_trip(text: str) -> None:
    try:
        ref = r.parse_normalized_named(text)
    except InvalidParameter:
        assume(False)  # too long or upper case (see the next test)
        return
    assert r.parse_normalized_named(str(ref)) == ref
    first, sep, _ = ref.familiar_name.partition("/")
    if ref.domain != r.DEFAULT_DOMAIN or not (sep and ("." in first or ":" in first)):
        # (docker.io/a.b/c is familiar "a.b/c", which reads as domain a.b: so in Go too)
        assert r.parse_normalized_named(ref.familiar) == ref
        assert r.normalize(ref.familiar) == ref.tag_name_only()
    assert ref.domain and ref.path
    if ref.tag is not None:
        assert r.validate_tag(ref.tag) == ref.tag


@PROPS
@given(valid_names())
def test_valid_names_are_accepted_unless_too_long(text: str) -> None:
    try:
        r.parse_normalized_named(text)
    except InvalidParameter as e:
        assert "must not be more than" in str(e) or "lowercase" in str(e), (text, e)
