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
    return not (
        failure.code == "ST301"
        and case.operation.path in ("/api/sync/{sync_id}", "/api/sync/{sync_id}/conflicts")
    )
