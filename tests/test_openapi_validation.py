"""Tests for the vendored GitHub OpenAPI subsets and app.sandbox.simulator.openapi."""

from __future__ import annotations

import importlib.util
import json
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    # Lets the tests run before the project is pip-installed into the venv.
    sys.path.insert(0, str(ROOT))

from app.sandbox.simulator.openapi import (  # noqa: E402
    REST_SPEC_FILE,
    WEBHOOKS_SPEC_FILE,
    RequestValidator,
    ValidationResult,
    WebhookValidator,
)

EXAMPLES_DIR = ROOT / "tests" / "fixtures" / "webhook_examples"
NODE_MODULES = Path("/tmp/npmspecs/node_modules")


def _load_vendor_script():
    """Import scripts/vendor_github_specs.py as a module (scripts/ is no package)."""
    spec = importlib.util.spec_from_file_location(
        "vendor_github_specs", ROOT / "scripts" / "vendor_github_specs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


vendor = _load_vendor_script()


@pytest.fixture(scope="module")
def rest() -> RequestValidator:
    return RequestValidator.load()


@pytest.fixture(scope="module")
def hooks() -> WebhookValidator:
    return WebhookValidator.load()


def _json(obj) -> bytes:
    return json.dumps(obj).encode()


# ---------------------------------------------------------------------------
# Valid requests
# ---------------------------------------------------------------------------

VALID_REQUESTS = [
    # (method, path, query, body, expected operationId)
    ("POST", "/app/installations/42/access_tokens", {},
     {"repositories": ["fleet"], "permissions": {"issues": "write"}},
     "apps/create-installation-access-token"),
    ("GET", "/app", {}, None, "apps/get-authenticated"),
    ("GET", "/installation/repositories", {"per_page": "100", "page": "2"}, None,
     "apps/list-repos-accessible-to-installation"),
    ("GET", "/app/hook/deliveries", {"per_page": "50", "cursor": "v1_1", "status": "failure"},
     None, "apps/list-webhook-deliveries"),
    ("POST", "/app/hook/deliveries/123/attempts", {}, None,
     "apps/redeliver-webhook-delivery"),
    ("GET", "/repos/octo/fleet/issues", {"state": "all", "labels": "bug,ui", "per_page": "30"},
     None, "issues/list-for-repo"),
    ("POST", "/repos/octo/fleet/issues", {},
     {"title": "Crash", "body": "details", "labels": ["bug", {"name": "ui"}],
      "assignees": ["alice"], "milestone": 3}, "issues/create"),
    ("PATCH", "/repos/octo/fleet/issues/7", {},
     {"state": "closed", "state_reason": "completed", "milestone": None}, "issues/update"),
    ("POST", "/repos/octo/fleet/issues/7/assignees", {}, {"assignees": ["alice"]},
     "issues/add-assignees"),
    ("DELETE", "/repos/octo/fleet/issues/7/assignees", {}, {"assignees": ["alice"]},
     "issues/remove-assignees"),
    ("GET", "/repos/octo/fleet/assignees/alice", {}, None, "issues/check-user-can-be-assigned"),
    ("POST", "/repos/octo/fleet/issues/7/comments", {}, {"body": "hello"},
     "issues/create-comment"),
    ("PATCH", "/repos/octo/fleet/issues/comments/99", {}, {"body": "edited"},
     "issues/update-comment"),
    ("DELETE", "/repos/octo/fleet/issues/comments/99", {}, None, "issues/delete-comment"),
    ("POST", "/repos/octo/fleet/issues/comments/99/reactions", {}, {"content": "+1"},
     "reactions/create-for-issue-comment"),
    ("POST", "/repos/octo/fleet/issues/7/reactions", {}, {"content": "rocket"},
     "reactions/create-for-issue"),
    ("POST", "/repos/octo/fleet/labels", {}, {"name": "bug", "color": "f29513"},
     "issues/create-label"),
    ("POST", "/repos/octo/fleet/issues/7/labels", {}, {"labels": ["bug"]}, "issues/add-labels"),
    ("PUT", "/repos/octo/fleet/issues/7/labels", {}, {"labels": ["bug"]}, "issues/set-labels"),
    ("POST", "/repos/octo/fleet/milestones", {}, {"title": "v1", "due_on": "2030-01-01T00:00:00Z"},
     "issues/create-milestone"),
    ("GET", "/repos/octo/fleet/milestones", {"state": "open", "sort": "due_on"}, None,
     "issues/list-milestones"),
    ("POST", "/repos/octo/fleet/pulls", {}, {"title": "t", "head": "feature", "base": "main"},
     "pulls/create"),
    ("PUT", "/repos/octo/fleet/pulls/5/merge", {},
     {"merge_method": "squash", "sha": "abc123"}, "pulls/merge"),
    ("GET", "/repos/octo/fleet/pulls/5/merge", {}, None, "pulls/check-if-merged"),
    ("PUT", "/repos/octo/fleet/pulls/5/update-branch", {}, None, "pulls/update-branch"),
    ("POST", "/repos/octo/fleet/pulls/5/reviews", {}, {"event": "APPROVE", "body": "lgtm"},
     "pulls/create-review"),
    ("POST", "/repos/octo/fleet/check-runs", {},
     {"name": "fleet", "head_sha": "abc", "status": "completed", "conclusion": "success",
      "output": {"title": "ok", "summary": "all good"}}, "checks/create"),
    ("PATCH", "/repos/octo/fleet/check-runs/11", {}, {"status": "in_progress"},
     "checks/update"),
    ("POST", "/repos/octo/fleet/statuses/abc123", {},
     {"state": "success", "context": "fleet"}, "repos/create-commit-status"),
    ("POST", "/repos/octo/fleet/merges", {}, {"base": "main", "head": "feature"},
     "repos/merge"),
    ("GET", "/repos/octo/fleet/branches", {"protected": "true"}, None, "repos/list-branches"),
    ("GET", "/repos/octo/fleet/issues/7/dependencies/blocked_by", {}, None,
     "issues/list-dependencies-blocked-by"),
    ("GET", "/repos/octo/fleet/issues/7/sub_issues", {"per_page": "10"}, None,
     "issues/list-sub-issues"),
    ("GET", "/orgs/octo/teams/core/memberships/alice", {}, None,
     "teams/get-membership-for-user-in-org"),
    ("POST", "/graphql", {}, {"query": "{ viewer { login } }", "variables": {"n": 1}},
     "graphql"),
    ("POST", "/graphql", {}, {"query": "{ viewer { login } }"}, "graphql"),
]


@pytest.mark.parametrize("method,path,query,body,operation_id", VALID_REQUESTS,
                         ids=[f"{r[0]} {r[1]}" for r in VALID_REQUESTS])
def test_valid_requests_pass(rest, method, path, query, body, operation_id):
    result = rest.validate(method, path, query, None if body is None else _json(body),
                           "application/json")
    assert result.errors == []
    assert result.ok and result.status is None
    assert result.operation_id == operation_id


def test_every_vendored_operation_is_exercised_or_routable(rest):
    """Each vendored operation is reachable through its own template."""
    for operation_id in rest.operation_ids:
        op = rest._operations[operation_id]
        path = op.template
        for name in ("owner", "repo", "org", "team_slug", "username", "assignee", "name",
                     "path", "ref", "branch", "sha"):
            path = path.replace("{" + name + "}", "x")
        path = path.replace("{", "").replace("}", "")
        for name in ("installation_id", "delivery_id", "issue_number", "comment_id",
                     "milestone_number", "pull_number", "check_run_id"):
            path = path.replace(name, "1")
        result = rest.validate(op.method, path, {}, None)
        assert result.operation_id == operation_id, (operation_id, path, result.errors)


def test_query_shapes_and_coercion(rest):
    """dict[str,str], dict[str,list[str]], MultiDict and ?query all work alike."""
    from werkzeug.datastructures import MultiDict

    shapes = [{"per_page": "5", "state": "closed"},
              {"per_page": ["5"], "state": ["closed"]},
              MultiDict([("per_page", "5"), ("state", "closed")])]
    for query in shapes:
        result = rest.validate("GET", "/repos/o/r/issues", query, None)
        assert result.errors == []
        assert result.query_params["per_page"] == 5
        assert result.query_params["state"] == "closed"
    inline = rest.validate("GET", "/repos/o/r/issues?per_page=5&state=closed", None, None)
    assert inline.errors == [] and inline.query_params["per_page"] == 5


def test_body_is_returned_parsed(rest):
    result = rest.validate("POST", "/repos/o/r/issues", {}, b'{"title": "x"}')
    assert result.body == {"title": "x"}


def test_vendor_json_content_type_is_accepted(rest):
    result = rest.validate("POST", "/repos/o/r/issues", {}, b'{"title": "x"}',
                           "application/vnd.github+json; charset=utf-8")
    assert result.errors == []


# ---------------------------------------------------------------------------
# Error kinds
# ---------------------------------------------------------------------------

def test_unknown_path(rest):
    result = rest.validate("GET", "/repos/o/r/wikis", {}, None)
    assert result.operation_id is None
    assert result.kind == "unknown_path" and result.status == 404
    assert "no GitHub operation matches path '/repos/o/r/wikis'" in result.errors


def test_unknown_top_level_path(rest):
    assert rest.validate("GET", "/nope/at/all", {}, None).kind == "unknown_path"
    assert rest.validate("GET", "/", {}, None).kind == "unknown_path"


def test_wrong_method(rest):
    result = rest.validate("DELETE", "/repos/o/r/issues/7", {}, None)
    assert result.kind == "method_not_allowed" and result.status == 405
    assert result.errors == ["method DELETE not allowed for "
                             "/repos/{owner}/{repo}/issues/{issue_number} (allowed: GET, PATCH)"]


def test_missing_required_body_field(rest):
    result = rest.validate("POST", "/repos/o/r/issues", {}, _json({"body": "no title"}))
    assert result.operation_id == "issues/create"
    assert result.kind == "invalid_body" and result.status == 422
    assert result.errors == ["body: 'title' is a required property"]


def test_wrong_body_type_names_the_field(rest):
    result = rest.validate("POST", "/repos/o/r/issues", {}, _json({"title": "t", "labels": "bug"}))
    assert result.errors == ["body.labels: 'bug' is not of type 'array'"]


def test_nested_body_error_names_the_path(rest):
    result = rest.validate("POST", "/repos/o/r/issues", {},
                           _json({"title": "t", "assignees": ["ok", 7]}))
    assert result.errors == ["body.assignees[1]: 7 is not of type 'string'"]


def test_bad_enum_in_body(rest):
    result = rest.validate("PUT", "/repos/o/r/pulls/5/merge", {}, _json({"merge_method": "fast"}))
    assert result.errors == [
        "body.merge_method: 'fast' is not one of ['merge', 'squash', 'rebase']"]


def test_non_integer_per_page(rest):
    result = rest.validate("GET", "/repos/o/r/issues", {"per_page": "lots"}, None)
    assert result.kind == "invalid_parameter"
    assert result.errors == ["query parameter 'per_page': 'lots' is not a valid integer"]


def test_bad_enum_in_query(rest):
    result = rest.validate("GET", "/repos/o/r/pulls", {"state": "merged"}, None)
    assert result.errors == [
        "query parameter 'state': 'merged' is not one of ['open', 'closed', 'all']"]


def test_bad_boolean_in_query(rest):
    result = rest.validate("GET", "/repos/o/r/branches", {"protected": "yes"}, None)
    assert result.errors == ["query parameter 'protected': 'yes' is not a valid boolean"]


def test_non_integer_path_param(rest):
    result = rest.validate("GET", "/repos/o/r/issues/abc", {}, None)
    assert result.operation_id == "issues/get"
    assert result.errors == ["path parameter 'issue_number': 'abc' is not a valid integer"]


def test_body_not_json(rest):
    result = rest.validate("POST", "/repos/o/r/issues", {}, b'{"title": ', "application/json")
    assert result.kind == "invalid_json" and result.status == 400
    assert result.errors[0].startswith("request body is not valid JSON")


def test_missing_required_body(rest):
    result = rest.validate("POST", "/repos/o/r/issues", {}, None)
    assert result.errors == ["request body is required"]
    assert rest.validate("POST", "/repos/o/r/issues", {}, b"  ").errors == [
        "request body is required"]


def test_non_json_content_type(rest):
    result = rest.validate("POST", "/repos/o/r/issues", {}, b'{"title": "x"}',
                           "application/x-www-form-urlencoded")
    assert result.kind == "invalid_body"
    assert "unsupported content type" in result.errors[0]


def test_optional_body_may_be_absent(rest):
    assert rest.validate("PATCH", "/repos/o/r/issues/1", {}, None).errors == []


def test_wrong_type_in_union_reports_closest_branch(rest):
    # add-labels takes {"labels": [...]}; a bare string matches no branch.
    result = rest.validate("POST", "/repos/o/r/issues/1/labels", {}, _json("bug"))
    assert len(result.errors) == 1
    assert result.errors[0].startswith("body: 'bug' is not valid under any of the given schemas")
    assert "closest match failed at body" in result.errors[0]


def test_graphql_requires_string_query(rest):
    assert rest.validate("POST", "/graphql", {}, _json({"variables": {}})).errors == [
        "body: 'query' is a required property"]
    assert rest.validate("POST", "/graphql", {}, _json({"query": 1})).errors == [
        "body.query: 1 is not of type 'string'"]
    assert rest.validate("POST", "/graphql", {},
                         _json({"query": "{a}", "variables": [1]})).errors == [
        "body.variables: [1] is not of type 'object', 'null'"]
    assert rest.validate("GET", "/graphql", {}, None).kind == "method_not_allowed"


def test_multiple_errors_are_all_reported(rest):
    result = rest.validate("GET", "/repos/o/r/issues", {"per_page": "x", "state": "nope"}, None)
    assert len(result.errors) == 2
    assert result.kind == "invalid_parameter"


# ---------------------------------------------------------------------------
# Path matching
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("path,operation_id,params", [
    ("/repos/o/r/contents/docs/guide/intro.md", "repos/get-content",
     {"owner": "o", "repo": "r", "path": "docs/guide/intro.md"}),
    ("/repos/o/r/contents/a%20b/c%2Bd.txt", "repos/get-content",
     {"owner": "o", "repo": "r", "path": "a b/c+d.txt"}),
    ("/repos/o/r/git/ref/heads/feature/deep/name", "git/get-ref",
     {"owner": "o", "repo": "r", "ref": "heads/feature/deep/name"}),
    ("/repos/o/r/commits/feature/x/check-runs", "checks/list-for-ref",
     {"owner": "o", "repo": "r", "ref": "feature/x"}),
    ("/repos/o/r/commits/feature/x/status", "repos/get-combined-status-for-ref",
     {"owner": "o", "repo": "r", "ref": "feature/x"}),
    ("/repos/o/r/branches/release/1.0", "repos/get-branch",
     {"owner": "o", "repo": "r", "branch": "release/1.0"}),
    ("/repos/o/r/labels/needs%2Freview", "issues/get-label",
     {"owner": "o", "repo": "r", "name": "needs/review"}),
    ("/repos/o/r/labels/good%20first%20issue", "issues/get-label",
     {"owner": "o", "repo": "r", "name": "good first issue"}),
])
def test_slash_containing_and_encoded_params(rest, path, operation_id, params):
    result = rest.validate("GET", path, {}, None)
    assert result.errors == []
    assert result.operation_id == operation_id
    assert result.path_params == params


def test_single_segment_params_do_not_swallow_slashes(rest):
    # {name} is single-segment: /labels/a/b is no label route.
    assert rest.validate("GET", "/repos/o/r/labels/a/b", {}, None).kind == "unknown_path"
    # {owner} cannot contain a slash either.
    assert rest.validate("GET", "/repos/o/x/r", {}, None).kind == "unknown_path"


def test_literal_segments_beat_parameters(rest):
    result = rest.validate("GET", "/repos/o/r/issues/comments/12", {}, None)
    assert result.operation_id == "issues/get-comment"
    assert result.path_params == {"owner": "o", "repo": "r", "comment_id": "12"}
    result = rest.validate("GET", "/repos/o/r/issues/12/comments", {}, None)
    assert result.operation_id == "issues/list-comments"


def test_merge_and_update_branch_share_a_prefix(rest):
    assert rest.validate("PUT", "/repos/o/r/pulls/1/merge", {}, b"{}").operation_id == "pulls/merge"
    assert rest.validate("GET", "/repos/o/r/pulls/1/merge", {}, None).operation_id == \
        "pulls/check-if-merged"
    assert rest.validate("POST", "/repos/o/r/pulls/1/merge", {}, None).kind == "method_not_allowed"


@settings(max_examples=200, deadline=None)
@given(method=st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"]),
       path=st.text(alphabet="/abcrepos{}%20?&=.-_", max_size=60),
       body=st.one_of(st.none(), st.binary(max_size=40)))
def test_validate_never_raises(rest, method, path, body):
    result = rest.validate(method, path, {}, body)
    assert isinstance(result, ValidationResult)
    assert result.errors or result.operation_id is not None


@settings(max_examples=100, deadline=None)
@given(number=st.integers(min_value=1, max_value=10**12),
       owner=st.from_regex(r"[A-Za-z0-9][A-Za-z0-9-]{0,20}", fullmatch=True))
def test_issue_route_round_trips(rest, number, owner):
    result = rest.validate("GET", f"/repos/{owner}/fleet/issues/{number}", {}, None)
    assert result.errors == []
    assert result.path_params == {"owner": owner, "repo": "fleet", "issue_number": str(number)}


def test_request_validation_is_fast(rest):
    body = _json({"title": "Crash", "body": "x" * 200, "labels": ["bug"], "assignees": ["a"]})
    calls = [("POST", "/repos/o/r/issues", {}, body),
             ("GET", "/repos/o/r/issues", {"per_page": "50", "state": "open"}, None),
             ("GET", "/repos/o/r/contents/a/b/c.md", {"ref": "main"}, None)]
    for call in calls:
        rest.validate(*call)  # warm up
    rounds = 300
    start = time.perf_counter()
    for _ in range(rounds):
        for call in calls:
            rest.validate(*call)
    per_request = (time.perf_counter() - start) / (rounds * len(calls))
    # Typically ~10-60 µs; the bound is loose so slow CI machines pass.
    assert per_request < 0.002


# ---------------------------------------------------------------------------
# Response validation
# ---------------------------------------------------------------------------

def test_validate_response_accepts_real_label(rest):
    label = json.loads((EXAMPLES_DIR / "label.json").read_text())[1]["label"]
    assert rest.validate_response("issues/get-label", 200, label) == []
    assert rest.validate_response("issues/get-label", 200, _json(label)) == []


def test_validate_response_reports_missing_fields(rest):
    errors = rest.validate_response("issues/get-label", 200, {"id": 1, "name": "bug"})
    assert "response: 'color' is a required property" in errors


def test_validate_response_nullable_fields_accept_null(rest):
    label = json.loads((EXAMPLES_DIR / "label.json").read_text())[1]["label"]
    assert rest.validate_response("issues/get-label", 200, dict(label, description=None)) == []
    assert rest.validate_response("issues/get-label", 200, dict(label, name=None)) == [
        "response.name: None is not of type 'string'"]


def test_validate_response_status_rules(rest):
    assert rest.validate_response("pulls/check-if-merged", 204, None) == []
    assert rest.validate_response("pulls/check-if-merged", 204, b"") == []
    assert rest.validate_response("pulls/check-if-merged", 204, {"x": 1}) == [
        "status 204 of pulls/check-if-merged has no body, got dict"]
    assert rest.validate_response("issues/get", 201, {}) == [
        "status 201 is not a documented success status of issues/get (documented: 200)"]
    assert rest.validate_response("issues/get", 404, {"message": "Not Found"}) == []
    assert rest.validate_response("no/such-op", 200, {}) == ["unknown operationId 'no/such-op'"]
    assert rest.validate_response("issues/get", 200, None) == [
        "status 200 of issues/get requires a JSON body"]


# ---------------------------------------------------------------------------
# Webhooks
# ---------------------------------------------------------------------------

# Official examples (@octokit/webhooks-examples 7.6.1) that fail the official
# schemas (@octokit/openapi-webhooks 12.1.0).  Two genuine causes, checked by
# test_known_example_failures_have_known_causes:
#  * the example was recorded before GitHub added fields the schema now marks
#    required (has_discussions, auto_merge, verified_at, app_slug, ...);
#  * old installation payloads carry created_at/updated_at as Unix epoch
#    integers, while the schema says date-time string.
KNOWN_EXAMPLE_FAILURES: dict[tuple[str, int], tuple[str, ...]] = {
    ('check_run', 7): (  # check_run.rerequested
        "payload.check_run: 'node_id' is a required property",
        "payload.check_run: 'details_url' is a required property",
        "payload.check_run.app: 'permissions' is a required property",
        "payload.check_run.app: 'events' is a required property",
        "payload.check_run.check_suite.app: 'permissions' is a required property",
        "payload.check_run.check_suite.app: 'events' is a required property",
        "payload.repository: 'disabled' is a required property",
    ),
    ('check_run', 8): (  # check_run.rerequested
        "payload.check_run: 'node_id' is a required property",
        "payload.check_run: 'details_url' is a required property",
        "payload.check_run.app: 'permissions' is a required property",
        "payload.check_run.app: 'events' is a required property",
        "payload.check_run.check_suite.app: 'permissions' is a required property",
        "payload.check_run.check_suite.app: 'events' is a required property",
        "payload.repository: 'disabled' is a required property",
    ),
    ('installation', 0): (  # installation.deleted
        "payload.installation: 'app_slug' is a required property",
        "payload.installation: 'suspended_by' is a required property",
        "payload.installation: 'suspended_at' is a required property",
        "payload.installation.created_at: 1525109898 is not of type 'string'",
        "payload.installation.updated_at: 1525109899 is not of type 'string'",
    ),
    ('installation', 1): (  # installation.created
        "payload.installation: 'app_slug' is a required property",
        "payload.installation.created_at: 1557933591 is not of type 'string'",
        "payload.installation.updated_at: 1557933591 is not of type 'string'",
    ),
    ('installation', 2): (  # installation.created
        "payload.installation: 'app_slug' is a required property",
        "payload.installation.created_at: 1557933591 is not of type 'string'",
        "payload.installation.updated_at: 1557933591 is not of type 'string'",
    ),
    ('installation', 3): (  # installation.deleted
        "payload.installation: 'app_slug' is a required property",
        "payload.installation.created_at: 1525109898 is not of type 'string'",
        "payload.installation.updated_at: 1525109899 is not of type 'string'",
    ),
    ('installation', 4): (  # installation.new_permissions_accepted
        "payload.installation.created_at: 1557933591 is not of type 'string'",
        "payload.installation.updated_at: 1557933591 is not of type 'string'",
    ),
    ('installation_repositories', 0): (  # installation_repositories.added
        "payload: 'requester' is a required property",
        "payload.installation: 'app_slug' is a required property",
        "payload.installation: 'suspended_by' is a required property",
        "payload.installation: 'suspended_at' is a required property",
        "payload.installation.created_at: 1557933591 is not of type 'string'",
        "payload.installation.updated_at: 1557933591 is not of type 'string'",
    ),
    ('installation_repositories', 1): (  # installation_repositories.added
        "payload.installation: 'app_slug' is a required property",
        "payload.installation.created_at: 1557933591 is not of type 'string'",
        "payload.installation.updated_at: 1557933591 is not of type 'string'",
    ),
    ('installation_repositories', 2): (  # installation_repositories.removed
        "payload.installation: 'app_slug' is a required property",
        "payload.installation.created_at: 1525109898 is not of type 'string'",
        "payload.installation.updated_at: 1525109899 is not of type 'string'",
    ),
    ('issue_comment', 0): (  # issue_comment.created
        "payload.comment: 'performed_via_github_app' is a required property",
        "payload.comment: 'reactions' is a required property",
        "payload.issue: 'active_lock_reason' is a required property",
        "payload.issue: 'reactions' is a required property",
        "payload.issue.labels[0]: 'description' is a required property",
        "payload.issue.labels[0]: 'description' is a required property",
    ),
    ('issues', 0): (  # issues.edited
        "payload.issue: 'active_lock_reason' is a required property",
        "payload.issue: 'reactions' is a required property",
        "payload.issue.labels[0]: 'description' is a required property",
    ),
    ('issues', 18): (  # issues.transferred
        "payload.changes.new_repository: 'has_discussions' is a required property",
    ),
    ('label', 0): (  # label.deleted
        "payload.label: 'description' is a required property",
    ),
    ('pull_request', 0): (  # pull_request.opened
        "payload.pull_request: 'auto_merge' is a required property",
    ),
    ('pull_request', 6): (  # pull_request.labeled
        "payload.pull_request.base.repo: 'has_discussions' is a required property",
        "payload.pull_request.head.repo: 'has_discussions' is a required property",
    ),
    ('pull_request', 7): (  # pull_request.labeled
        "payload.pull_request.base.repo: 'has_discussions' is a required property",
        "payload.pull_request.head.repo: 'has_discussions' is a required property",
    ),
    ('pull_request', 16): (  # pull_request.synchronize
        "payload.pull_request.base.repo: 'has_discussions' is a required property",
        "payload.pull_request.head.repo: 'has_discussions' is a required property",
    ),
    ('pull_request', 17): (  # pull_request.unlabeled
        "payload.pull_request.base.repo: 'has_discussions' is a required property",
        "payload.pull_request.head.repo: 'has_discussions' is a required property",
    ),
    ('pull_request', 18): (  # pull_request.unlabeled
        "payload.pull_request.base.repo: 'has_discussions' is a required property",
        "payload.pull_request.head.repo: 'has_discussions' is a required property",
    ),
    ('pull_request_review', 0): (  # pull_request_review.submitted
        "payload.pull_request: 'draft' is a required property",
        "payload.pull_request: 'auto_merge' is a required property",
        "payload.pull_request: 'active_lock_reason' is a required property",
        "payload.pull_request.base.repo: 'has_discussions' is a required property",
        "payload.pull_request.base.repo: 'topics' is a required property",
        "payload.pull_request.base.repo: 'visibility' is a required property",
        "payload.pull_request.head.repo: 'has_discussions' is a required property",
        "payload.pull_request.head.repo: 'topics' is a required property",
        "payload.pull_request.head.repo: 'visibility' is a required property",
    ),
    ('pull_request_review', 1): (  # pull_request_review.dismissed
        "payload.pull_request.base.repo: 'has_discussions' is a required property",
        "payload.pull_request.head.repo: 'has_discussions' is a required property",
    ),
    ('pull_request_review', 2): (  # pull_request_review.submitted
        "payload.pull_request.base.repo: 'has_discussions' is a required property",
        "payload.pull_request.head.repo: 'has_discussions' is a required property",
    ),
    ('pull_request_review', 3): (  # pull_request_review.submitted
        "payload.pull_request.base.repo: 'has_discussions' is a required property",
        "payload.pull_request.head.repo: 'has_discussions' is a required property",
    ),
    ('push', 0): (  # push
        "payload.repository: 'has_discussions' is a required property",
        "payload.repository: 'topics' is a required property",
        "payload.repository: 'visibility' is a required property",
    ),
    ('push', 1): (  # push
        "payload.repository: 'has_discussions' is a required property",
    ),
    ('push', 2): (  # push
        "payload.repository: 'has_discussions' is a required property",
    ),
    ('push', 3): (  # push
        "payload.repository: 'has_discussions' is a required property",
    ),
    ('push', 4): (  # push
        "payload.repository: 'has_discussions' is a required property",
    ),
    ('push', 5): (  # push
        "payload.repository: 'has_discussions' is a required property",
    ),
    ('push', 6): (  # push
        "payload.repository: 'has_discussions' is a required property",
    ),
    ('status', 0): (  # status
        "payload.commit.commit.verification: 'verified_at' is a required property",
    ),
    ('status', 1): (  # status
        "payload.commit.commit.verification: 'verified_at' is a required property",
    ),
    ('status', 2): (  # status
        "payload.commit.commit.verification: 'verified_at' is a required property",
    ),
    ('status', 3): (  # status
        "payload.commit.commit.verification: 'verified_at' is a required property",
    ),
}


def _all_examples() -> list[tuple[str, int, dict]]:
    examples = []
    for path in sorted(EXAMPLES_DIR.glob("*.json")):
        for index, payload in enumerate(json.loads(path.read_text())):
            examples.append((path.stem, index, payload))
    return examples


ALL_EXAMPLES = _all_examples()


@pytest.mark.parametrize("event,index,payload", ALL_EXAMPLES,
                         ids=[f"{e}[{i}]" for e, i, _ in ALL_EXAMPLES])
def test_official_webhook_examples_validate(hooks, event, index, payload):
    errors = hooks.validate(event, payload)
    expected = KNOWN_EXAMPLE_FAILURES.get((event, index), ())
    assert sorted(errors) == sorted(expected)


def test_known_example_failures_exist():
    present = {(event, index) for event, index, _ in ALL_EXAMPLES}
    assert set(KNOWN_EXAMPLE_FAILURES) <= present


def test_known_example_failures_have_known_causes():
    for errors in KNOWN_EXAMPLE_FAILURES.values():
        for error in errors:
            stale_field = error.endswith("is a required property")
            epoch_timestamp = (error.startswith("payload.installation.")
                               and error.split(":")[0].endswith(("created_at", "updated_at"))
                               and error.endswith("is not of type 'string'"))
            assert stale_field or epoch_timestamp, error


def test_examples_cover_most_events():
    events = {event for event, _, _ in ALL_EXAMPLES}
    # GitHub publishes no examples for issue_dependencies and sub_issues yet.
    assert events == set(vendor.WEBHOOK_EVENTS) - {"issue_dependencies", "sub_issues"}


def test_webhook_unknown_event_or_action(hooks):
    assert hooks.validate("issues", {"action": "frobnicated"}) == [
        "unknown webhook event/action 'issues.frobnicated'"]
    assert hooks.validate("workflow_run", {"action": "completed"}) == [
        "unknown webhook event/action 'workflow_run.completed'"]
    assert hooks.validate("issues", {}) == ["unknown webhook event/action 'issues'"]


def test_webhook_schema_violation_names_the_field(hooks):
    payload = json.loads((EXAMPLES_DIR / "label.json").read_text())[1]
    assert hooks.validate("label", payload) == []
    broken = dict(payload, label=dict(payload["label"], color=5))
    assert hooks.validate("label", broken) == ["payload.label.color: 5 is not of type 'string'"]
    assert hooks.validate("label", {k: v for k, v in payload.items() if k != "repository"}) == [
        "payload: 'repository' is a required property"]


def test_webhook_keys_match_requested_events(hooks):
    keys = set(hooks.keys)
    for event, actions in vendor.WEBHOOK_EVENTS.items():
        if actions is None:
            assert event in keys
        elif actions == vendor.ALL_ACTIONS:
            assert any(k.startswith(event + ".") for k in keys), event
        else:
            assert {f"{event}.{a}" for a in actions} <= keys
    assert {"issue_dependencies.blocked_by_added", "sub_issues.sub_issue_added",
            "check_run.requested_action", "pull_request.ready_for_review"} <= keys


# ---------------------------------------------------------------------------
# Vendored files and the vendoring script
# ---------------------------------------------------------------------------

def _refs(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


@pytest.mark.parametrize("spec_file", [REST_SPEC_FILE, WEBHOOKS_SPEC_FILE], ids=lambda p: p.name)
def test_vendored_specs_are_self_contained_and_small(spec_file):
    assert spec_file.stat().st_size < 3 * 1024 * 1024
    document = json.loads(spec_file.read_text())
    schemas = document["components"]["schemas"]
    refs = set(_refs(document))
    assert refs, "expected component references"
    for ref in refs:
        assert ref.startswith("#/components/schemas/"), ref
        assert ref.removeprefix("#/components/schemas/") in schemas, ref
    # Only referenced schemas are kept.
    assert {r.removeprefix("#/components/schemas/") for r in refs} == set(schemas)


def test_examples_are_small():
    total = sum(p.stat().st_size for p in EXAMPLES_DIR.glob("*.json"))
    assert total < 3 * 1024 * 1024


def test_vendored_operations_match_script():
    document = json.loads(REST_SPEC_FILE.read_text())
    vendored = [(op["method"], op["path"]) for op in document["operations"]]
    assert vendored == vendor.OPERATIONS + [("POST", "/graphql")]


def test_clean_schema_converts_openapi30_nullable():
    clean = vendor.clean_schema
    assert clean({"type": "string", "nullable": True, "description": "x"}, openapi30=True) == {
        "type": ["string", "null"]}
    assert clean({"type": "string", "enum": ["a"], "nullable": True}, openapi30=True) == {
        "type": ["string", "null"], "enum": ["a", None]}
    assert clean({"allOf": [{"$ref": "#/components/schemas/x"}], "nullable": True},
                 openapi30=True) == {
        "anyOf": [{"allOf": [{"$ref": "#/components/schemas/x"}]}, {"type": "null"}]}
    # OpenAPI 3.0 ignores $ref siblings; 3.1 keeps them.
    assert clean({"$ref": "#/a", "type": "object"}, openapi30=True) == {"$ref": "#/a"}
    assert clean({"$ref": "#/a", "type": "object"}, openapi30=False) == {
        "$ref": "#/a", "type": "object"}
    # Property *names* that look like keywords survive; documentation does not.
    assert clean({"type": "object", "example": {}, "properties": {
        "description": {"type": "string", "title": "t"}}}, openapi30=True) == {
        "type": "object", "properties": {"description": {"type": "string"}}}


def test_script_fails_loudly_on_missing_operation():
    spec = {"paths": {}, "components": {"schemas": {}}}
    with pytest.raises(vendor.VendorError, match="operations missing"):
        vendor.build_rest_subset(spec, "0")


def test_script_fails_on_dangling_ref():
    spec = {"components": {"schemas": {}}}
    with pytest.raises(vendor.VendorError, match="dangling"):
        vendor.collect_component_schemas([{"$ref": "#/components/schemas/gone"}], spec,
                                         openapi30=True)


@pytest.mark.skipif(not NODE_MODULES.is_dir(),
                    reason=f"{NODE_MODULES} (npm packages) not present; only on dev machines")
def test_vendoring_reproduces_committed_files():
    outputs = vendor.generate(NODE_MODULES)
    for path, text in outputs.items():
        assert path.read_text(encoding="utf-8") == text, path
    assert set(EXAMPLES_DIR.glob("*.json")) == {
        p for p in outputs if p.parent == EXAMPLES_DIR}
