"""Schemathesis hooks for the reference server's fuzz suite (scripts/test.sh).

Loaded with SCHEMATHESIS_HOOKS=server/fuzz/hooks.py.
"""

import schemathesis

# Names under /api/ that are other routes, never collections. The document
# says so (the `collection` parameter's schema has `not: {enum: [...]}`), and
# negative testing therefore sends exactly these names as "invalid"
# collections. Such a request is not an invalid request to the collection
# operation: it is a valid request to another operation (GET /api/me answers
# 200 as /api/me does; POST /api/logout would revoke the fuzzer's own token;
# GET /api/events would open a stream; GET /api/metrics answers the server's
# figures). Those operations are fuzzed on their own, so here the name is
# swapped for one that breaks the pattern the same way and reaches the
# collection operation, which must refuse it with 404.
RESERVED = {"changes", "events", "login", "logout", "me", "metrics", "sync"}


@schemathesis.hook
def before_call(context, case, kwargs):
    params = case.path_parameters
    if params and params.get("collection") in RESERVED:
        params["collection"] = params["collection"].upper()


# DELETE /api/sync/{sync_id} cancels a job; the job stays readable (status
# "cancelled") for 10 minutes, as docs/backend/protocol.md says, so that every
# tab can see how it ended, with the rows it left alone (its conflicts). It is
# not a deletion, so "deleted resource still available" (ST301, raised on a GET
# after the DELETE) does not apply to a sync job or its conflicts. Records keep
# the check: a deleted record answers 404.
# (A per-operation `checks.use_after_free.enabled = false` in the config is
# not consulted by the stateful phase that raises it.)
@schemathesis.hook
def filter_failure(context, failure, case, response):
    if failure.code == "ST301" and case.operation.path in (
        "/api/sync/{sync_id}",
        "/api/sync/{sync_id}/conflicts",
    ):
        return False
    return not _cursor_of_another_server(failure, case, response)


# A changes-feed cursor is the server's own: a cursor it did not give out
# (another server's, one of a database since replaced, or one pruned) is
# `410 cursor_expired`, "reload everything", as the document says for both
# routes that take one. Any string is a cursor to the document (it is
# opaque to clients), so the check for schema-valid requests (ST202) reports
# the 410; it is the answer the protocol asks for, not a refusal of a valid
# request.
def _cursor_of_another_server(failure, case, response):
    if failure.code != "ST202" or response is None or response.status_code != 410:
        return False
    if case.operation.path not in ("/api/changes", "/api/events"):
        return False
    try:
        return response.json()["error"]["code"] == "cursor_expired"
    except (ValueError, KeyError, TypeError):
        return False
