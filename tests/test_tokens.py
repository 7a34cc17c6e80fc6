from __future__ import annotations

import pytest

from tether.errors import AuthError, ForbiddenError, RateLimitedError, RequestError
from tether.limits import Limits
from tether.tokens import FORGET_EXPIRED_AFTER_S, SCOPES, TOKEN_PREFIX, TokenStore


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_issue_authenticate_expire() -> None:
    clock = Clock()
    store = TokenStore(clock, elapsed=clock)
    token, record = store.issue("alice", ["chat", "completions"], ttl_s=60)
    assert token.startswith(TOKEN_PREFIX) and len(token) == len(TOKEN_PREFIX) + 43
    assert token not in repr(record) and record.digest != token
    principal = store.authenticate(token)
    assert principal.name == "alice" and principal.allows("chat") and not principal.allows("check")
    clock.now += 61
    for _ in range(2):  # and still "expired", not "unknown", when it comes back
        with pytest.raises(AuthError, match="expired"):
            store.authenticate(token)
    assert store.records() == []


def test_revoke_and_unknown_tokens() -> None:
    store = TokenStore()
    token, record = store.issue("bob", ["check"], ttl_s=60)
    assert store.revoke(record.id) and not store.revoke(record.id)
    with pytest.raises(AuthError):
        store.authenticate(token)
    with pytest.raises(AuthError, match="ask for a new one"):
        store.authenticate(TOKEN_PREFIX + "x" * 43)


def test_admin_token_has_every_scope() -> None:
    store = TokenStore()
    store.add_admin("tth_admin")
    assert store.authenticate("tth_admin").scopes == frozenset(SCOPES)


@pytest.mark.parametrize(
    ("principal", "scopes", "ttl", "needle"),
    [
        ("carol", ["root"], 60, "unknown scope"),
        ("carol", [], 60, "at least one scope"),
        # Two known scopes joined by a space read as one unknown one: say how to list them.
        ("carol", ["dashboard audit:read"], 60, "'dashboard audit:read'; separate scopes with"),
        ("", ["chat"], 60, "principal"),
        ("eve\n2026-01-01 admin", ["chat"], 60, "printable"),  # would split a log line
        ("eve\x00", ["chat"], 60, "printable"),
        ("total", ["chat"], 60, "reserved"),  # would pass for a usage report's total row
        (" (anonymous)", ["chat"], 60, "reserved"),
        # The server's own admin token's: traces, usage and audit would credit it.
        ("admin", ["chat"], 60, "'admin' is reserved: it is the server's own admin token's"),
        (" Admin ", ["chat"], 60, "reserved"),
        # Names that read as admin: fullwidth, a dotted capital I, a dotless i.
        ("\uff41\uff44\uff4d\uff49\uff4e", ["chat"], 60, "reserved"),
        ("ADM\u0130N", ["chat"], 60, "reserved"),
        ("adm\u0131n", ["chat"], 60, "reserved"),
        ("(Other)", ["chat"], 60, "/metrics counts the principals past"),
        # A Cyrillic a among Latin letters: admin, or alice, to a reader.
        ("\u0430dmin", ["chat"], 60, "mixes Latin, Cyrillic or Greek letters"),
        ("\u0430lice", ["chat"], 60, "mixes Latin, Cyrillic or Greek letters"),
        ("\u0391dmin", ["chat"], 60, "mixes Latin, Cyrillic or Greek letters"),  # Greek Alpha
        ("eve\u00a0smith", ["chat"], 60, "invisible ones"),
        ("carol", ["chat"], 0, "ttl"),
        ("carol", ["chat"], 0.001, "between 1 second"),  # else expired when issued
        ("carol", ["chat"], 10**9, "ttl"),
    ],
)
def test_bad_token_requests(principal: str, scopes: list[str], ttl: float, needle: str) -> None:
    with pytest.raises(RequestError, match=needle):
        TokenStore().issue(principal, scopes, ttl)


def test_a_name_written_decomposed_is_the_same_principal_as_written_composed() -> None:
    # "José" typed on macOS (an e and a combining acute) and elsewhere (one é) look the
    # same in every report, but were two principals: usage, traces and audit split them.
    store = TokenStore()
    _, composed = store.issue("Jos\u00e9", ["chat"], ttl_s=60)
    token, decomposed = store.issue("Jose\u0301", ["chat"], ttl_s=60)
    assert decomposed.principal == composed.principal == "Jos\u00e9"
    assert store.authenticate(token).name == "Jos\u00e9"


def test_no_token_passes_for_the_servers_own_admin_token() -> None:
    store = TokenStore()
    store.add_admin("the-admin-token")
    issuer_token, _ = store.issue("lead", ["tokens:admin", "dashboard"], ttl_s=600)
    for issuer in (store.authenticate(issuer_token), store.authenticate("the-admin-token")):
        with pytest.raises(RequestError, match="reserved") as info:
            store.issue("admin", ["dashboard"], issuer=issuer)
        assert info.value.param == "principal"
    assert [r.principal for r in store.records()].count("admin") == 1


def test_every_scope_is_named_and_described() -> None:
    from typing import get_args

    from tether.tokens import SCOPES, ScopeName

    assert set(get_args(ScopeName)) == set(SCOPES) and all(SCOPES.values())


def test_a_token_issues_no_more_than_it_has_and_cannot_revoke_the_admin() -> None:
    clock = Clock()
    store = TokenStore(clock, elapsed=clock)
    admin = store.add_admin("the-admin-token")
    issuer_token, _ = store.issue("ci", ["tokens:admin", "chat"], ttl_s=600)
    issuer = store.authenticate(issuer_token)
    child_token, child = store.issue("job", ["chat"], ttl_s=600, issuer=issuer)
    assert child.expires_at == clock.now + 600
    with pytest.raises(ForbiddenError, match="lacks audit:read"):
        store.issue("job", ["chat", "audit:read"], ttl_s=60, issuer=issuer)
    clock.now += 100
    with pytest.raises(RequestError, match=r"in 8m20s: ask for that or less") as info:
        store.issue("job", ["chat"], ttl_s=30 * 86400, issuer=issuer)
    assert info.value.param == "ttl_s"
    # No lifetime asked: an hour, or what the issuer has left when that is less.
    _, defaulted = store.issue("job", ["chat"], issuer=issuer)
    assert defaulted.expires_at == clock.now + 500
    _, own = store.issue("job", ["chat"])
    assert own.expires_at == clock.now + 3600
    with pytest.raises(ForbiddenError, match="cannot be revoked"):
        store.revoke(admin.id)
    admin_principal = store.authenticate("the-admin-token")  # still works
    store.issue("ops", ["audit:read"], ttl_s=30 * 86400, issuer=admin_principal)  # anything
    assert store.revoke(child.id)
    with pytest.raises(AuthError, match="revoked; ask for a new one"):
        store.authenticate(child_token)


def test_a_token_manages_only_the_tokens_issued_through_it() -> None:
    store = TokenStore()
    admin = store.add_admin("the-admin-token")
    as_admin = store.authenticate("the-admin-token")
    lead_token, lead = store.issue("lead", ["tokens:admin", "chat"], issuer=as_admin)
    other_token, other = store.issue("other", ["tokens:admin", "chat"], issuer=as_admin)
    as_lead = store.authenticate(lead_token)
    team_token, team = store.issue("team", ["tokens:admin", "chat"], issuer=as_lead)
    _, member = store.issue("member", ["chat"], issuer=store.authenticate(team_token))
    assert member.public()["issued_by"] == team.id and member.lineage == (
        admin.id,
        lead.id,
        team.id,
    )
    assert {r.id for r in store.records(as_lead)} == {lead.id, team.id, member.id}
    assert len(store.records(as_admin)) == 5
    with pytest.raises(ForbiddenError, match="not issued through this one"):
        store.revoke(other.id, by=as_lead)
    with pytest.raises(ForbiddenError, match="not issued through this one"):
        store.revoke(lead.id, by=store.authenticate(other_token))
    assert store.revoke(team.id, by=as_lead)
    assert not store.revoke(member.id, by=as_lead)  # gone with the token that issued it
    assert store.revoke(other.id, by=as_admin)


def test_revoking_a_token_revokes_what_it_issued() -> None:
    """A leaked token's children, and theirs, stop with it: they can neither answer nor
    issue more; its siblings and its own issuer go on."""
    store = TokenStore()
    store.add_admin("the-admin-token")
    as_admin = store.authenticate("the-admin-token")
    lead_token, lead = store.issue("lead", ["tokens:admin", "chat"], issuer=as_admin)
    as_lead = store.authenticate(lead_token)
    team_token, team = store.issue("team", ["tokens:admin", "chat"], issuer=as_lead)
    member_token, _ = store.issue("member", ["chat"], issuer=store.authenticate(team_token))
    sibling_token, _ = store.issue("sibling", ["chat"], issuer=as_lead)
    member_id = store.authenticate(member_token).token_id
    revoked = store.revoke(team.id, by=store.authenticate(team_token))  # it revokes itself
    assert revoked == [team.id, member_id]  # said, so the operator knows what went with it
    for gone in (team_token, member_token):
        with pytest.raises(AuthError, match="revoked"):
            store.authenticate(gone)
    assert store.authenticate(sibling_token).name == "sibling"
    assert {r.id for r in store.records(as_lead)} == {
        lead.id,
        store.authenticate(sibling_token).token_id,
    }


@pytest.mark.parametrize("presented_after_expiry", [False, True])
def test_an_expired_token_is_revoked_whether_presented_since_or_not(
    presented_after_expiry: bool,
) -> None:
    clock = Clock()
    store = TokenStore(clock, elapsed=clock)
    store.add_admin("the-admin-token")
    lead_token, lead = store.issue("lead", ["tokens:admin", "chat"], ttl_s=60)
    member_token, member = store.issue("member", ["chat"], issuer=store.authenticate(lead_token))
    other_token, _ = store.issue("other", ["tokens:admin"], ttl_s=600)
    clock.now += 61
    if presented_after_expiry:
        for token in (lead_token, member_token):
            with pytest.raises(AuthError, match="expired"):
                store.authenticate(token)
    assert store.has_expired(lead.id)
    with pytest.raises(ForbiddenError, match="not issued through this one"):
        store.revoke(lead.id, by=store.authenticate(other_token))  # still not another's
    assert store.revoke(lead.id) == [lead.id, member.id]
    assert store.revoke(lead.id) == [] and not store.has_expired(lead.id)
    for token in (lead_token, member_token):
        with pytest.raises(AuthError, match="revoked"):
            store.authenticate(token)


def test_a_token_gives_no_more_allowance_than_it_has() -> None:
    store = TokenStore()
    store.add_admin("the-admin-token")
    admin = store.authenticate("the-admin-token")
    issuer_token, _ = store.issue(
        "ci", ["tokens:admin", "chat"], ttl_s=600, limits=Limits(rpm=1, tpm=10)
    )
    issuer = store.authenticate(issuer_token)
    _, child = store.issue("job", ["chat"], ttl_s=60, issuer=issuer)
    assert child.limits == Limits(rpm=1, tpm=10)  # the issuer's, when none are asked
    _, tighter = store.issue("job", ["chat"], ttl_s=60, issuer=issuer, limits=Limits(tpm=5))
    assert tighter.limits == Limits(rpm=1, tpm=5)
    with pytest.raises(RequestError, match="rpm must be at most 1") as info:
        store.issue("job", ["chat"], ttl_s=60, issuer=issuer, limits=Limits(rpm=100))
    assert info.value.param == "rpm"
    _, free = store.issue("ops", ["chat"], ttl_s=60, issuer=admin)  # the admin's: anything
    assert free.limits == Limits()


def test_tokens_issued_by_a_token_share_its_allowance() -> None:
    """Issuing children is no way around a limit: their use counts against the issuer,
    and against its issuer in turn, but never against the server's own token."""
    store = TokenStore()
    store.add_admin("the-admin-token")
    admin = store.authenticate("the-admin-token")
    issuer_token, issuer_record = store.issue(
        "ci", ["tokens:admin", "chat"], ttl_s=600, limits=Limits(rpm=2, tpm=100), issuer=admin
    )
    issuer = store.authenticate(issuer_token)
    assert issuer.issuers == ()  # the server's own token lends no allowance
    middle_token, middle_record = store.issue(
        "team", ["tokens:admin", "chat"], ttl_s=300, issuer=issuer
    )
    middle = store.authenticate(middle_token)
    children = [
        store.authenticate(store.issue(f"job{n}", ["chat"], ttl_s=60, issuer=middle)[0])
        for n in range(3)
    ]
    assert children[0].issuers == (
        (middle_record.id, Limits(rpm=2, tpm=100)),
        (issuer_record.id, Limits(rpm=2, tpm=100)),
    )
    store.admit(children[0])
    store.admit(children[1])
    with pytest.raises(
        RateLimitedError, match=f"token {middle_record.id}, which issued it,"
    ) as info:
        store.admit(children[2])  # its own rpm is untouched; its issuer's is spent
    assert info.value.limit == "rpm"
    with pytest.raises(RateLimitedError, match="this token is over its limit"):
        store.admit(middle)
    assert store.limiter.usage(issuer_record.id)["requests_last_minute"] == 2
    assert store.limiter.usage(children[2].token_id)["requests_last_minute"] == 0
    assert store.limiter.usage(admin.token_id)["requests_last_minute"] == 0

    store.limiter.spend(children[0].token_id, 150, children[0].issuers)
    assert store.limiter.usage(issuer_record.id)["tokens_last_minute"] == 150
    assert store.limiter.usage(children[1].token_id)["tokens_last_minute"] == 0
    # A token issued by the admin is unaffected by its siblings.
    other = store.authenticate(store.issue("other", ["chat"], ttl_s=60, issuer=admin)[0])
    store.admit(other)


def test_an_expired_token_is_forgotten_a_day_after_it_expires() -> None:
    clock = Clock()
    store = TokenStore(clock, elapsed=clock)
    store.add_admin("the-admin-token")
    short_token, short = store.issue("short", ["chat"], ttl_s=60)
    long_token, _ = store.issue("long", ["chat"], ttl_s=3 * 86_400)
    store.admit(store.authenticate(short_token))
    clock.now += 61
    with pytest.raises(AuthError, match="expired"):
        store.authenticate(short_token)
    assert store.has_expired(short.id)  # for a day: still told apart, and revocable
    assert short not in store.records() and short in store.records(expired=True)
    clock.now += FORGET_EXPIRED_AFTER_S
    store.authenticate(long_token)
    assert not store.has_expired(short.id) and short not in store._known()
    with pytest.raises(AuthError, match="forgotten a day after they expire"):
        store.authenticate(short_token)
    assert {r.principal for r in store.records()} == {"admin", "long"}
    assert {r.principal for r in store.records(expired=True)} == {"admin", "long"}


def test_a_revoked_token_is_forgotten_a_day_after_it_would_have_expired() -> None:
    """Each revoked token's digest was kept for as long as the server ran: a token per CI
    job, revoked as the job ends, grew the server's memory without end."""
    clock = Clock()
    store = TokenStore(clock, elapsed=clock)
    issued = [store.issue(f"job-{n}", ["completions"], ttl_s=60) for n in range(100)]
    for _, record in issued:
        assert store.revoke(record.id) == [record.id]
    clock.now += 60 + FORGET_EXPIRED_AFTER_S - 1  # for a day after its end: still "revoked"
    with pytest.raises(AuthError, match="revoked"):
        store.authenticate(issued[0][0])
    clock.now += 61  # a day past its end, and the once-a-minute sweep is due
    with pytest.raises(AuthError, match="forgotten a day after they expire"):
        store.authenticate(issued[1][0])
    assert len(store._revoked) == 0


@pytest.mark.parametrize(
    "principal",
    ["\u0418\u0432\u0430\u043d", "\u0395\u03bb\u03ad\u03bd\u03b7", "I\u015f\u0131k", "Jos\u00e9",
     "\u738b\u82b3", "ci-bot 2", "Zo\u00eb"],
)  # fmt: skip
def test_names_in_one_script_are_taken_as_written(principal: str) -> None:
    _, record = TokenStore().issue(principal, ["chat"], 60)
    assert record.principal == principal


def test_a_refusal_whose_wait_outlasts_the_token_says_it_expires_first() -> None:
    """A token of 10 s over its rpm was told to retry in 60 s."""
    clock = Clock()
    store = TokenStore(clock, elapsed=clock)
    token, _ = store.issue("ed", ["completions"], ttl_s=10, limits=Limits(rpm=1, tpm=5))
    principal = store.authenticate(token)
    store.admit(principal)
    with pytest.raises(RateLimitedError) as refused:
        store.admit(principal)
    assert "but this token expires in 10 s, before then: ask for a new one" in refused.value.message
    store.limiter.spend(principal.token_id, 5, principal.issuers)  # back in a minute
    with pytest.raises(RateLimitedError, match="expires in 10 s") as spent:
        store.hold(principal, 1)
    assert spent.value.limit == "tpm"
    # A token that outlives the wait is told only to wait.
    lasting, _ = store.issue("al", ["completions"], ttl_s=3600, limits=Limits(rpm=1))
    other = store.authenticate(lasting)
    store.admit(other)
    with pytest.raises(RateLimitedError) as waited:
        store.admit(other)
    assert "expires" not in waited.value.message
    # The issuer's limit, not its own: a new token from that issuer would wait as long.
    parent, _ = store.issue("team", ["completions"], ttl_s=3600, limits=Limits(rpm=1))
    issuer = store.authenticate(parent)
    first, _ = store.issue("ci-1", ["completions"], ttl_s=10, issuer=issuer)
    second, _ = store.issue("ci-2", ["completions"], ttl_s=10, issuer=issuer)
    store.admit(store.authenticate(first))  # the issuer's one request a minute
    with pytest.raises(RateLimitedError) as by_issuer:
        store.admit(store.authenticate(second))
    assert by_issuer.value.issuer is not None and "expires" not in by_issuer.value.message
    # Both at their limits: the token's own is said, without the note either.
    both, _ = store.issue("team2", ["completions"], ttl_s=3600, limits=Limits(rpm=1))
    short, _ = store.issue("ci-3", ["completions"], ttl_s=10, issuer=store.authenticate(both))
    store.admit(store.authenticate(short))
    with pytest.raises(RateLimitedError) as at_both:
        store.admit(store.authenticate(short))
    assert at_both.value.message.startswith("this token") and at_both.value.issuer is not None
    assert "expires" not in at_both.value.message


def test_a_wall_clock_stepped_back_does_not_lengthen_a_tokens_life() -> None:
    wall, elapsed = Clock(), Clock()
    store = TokenStore(wall, elapsed=elapsed)
    token, _ = store.issue("alice", ["chat"], ttl_s=600)
    wall.now -= 3600  # NTP steps a fast clock back an hour
    elapsed.now += 500
    issuer = store.authenticate(token)
    assert issuer.name == "alice"
    # What it has left, and so what it may give, is what its own lifetime has left.
    with pytest.raises(RequestError, match=r"in 1m40s"):
        store.issue("job", ["chat"], ttl_s=3600, issuer=issuer)
    elapsed.now += 100
    with pytest.raises(AuthError, match="expired"):
        store.authenticate(token)


def test_a_wall_clock_stepped_forward_still_ends_a_token() -> None:
    wall, elapsed = Clock(), Clock()
    store = TokenStore(wall, elapsed=elapsed)
    token, record = store.issue("alice", ["chat"], ttl_s=600)
    wall.now += 86_400  # a VM resumed after a day: the monotonic clock stood still
    assert store.is_expired(record)
    with pytest.raises(AuthError, match="expired"):
        store.authenticate(token)


def test_a_token_s_end_is_told_by_the_clock_as_it_reads_after_a_step_back() -> None:
    """Once the wall clock was stepped back, a token ends before its expires_at: the
    list still showed the end it was issued with, an hour late, and a refusal to wait
    past its end did not say the token would be gone first."""
    wall, elapsed = Clock(), Clock()
    store = TokenStore(wall, elapsed=elapsed)
    token, record = store.issue("ed", ["completions"], ttl_s=100, limits=Limits(rpm=1))
    wall.now -= 3600  # NTP steps a fast clock back an hour
    elapsed.now += 50
    assert store.public(record)["expires_at"] == int(wall.now + 50)
    principal = store.authenticate(token)
    store.admit(principal)
    with pytest.raises(RateLimitedError, match="this token expires in 50 s"):
        store.admit(principal)
    # Without a step, the end is the one it was issued with.
    _, steady = store.issue("al", ["completions"], ttl_s=100)
    assert (
        store.public(steady)["expires_at"] == int(wall.now + 100) == steady.public()["expires_at"]
    )


def test_a_token_ended_by_its_lifetime_is_forgotten_a_day_after_that() -> None:
    wall, elapsed = Clock(), Clock()
    store = TokenStore(wall, elapsed=elapsed)
    token, _ = store.issue("ed", ["completions"], ttl_s=100)
    wall.now -= 3600  # stepped back: it ends 100 s on, an hour before its expires_at
    for clock in (wall, elapsed):
        clock.now += 100 + FORGET_EXPIRED_AFTER_S + 100
    with pytest.raises(AuthError, match="not valid for this server"):
        store.authenticate(token)
