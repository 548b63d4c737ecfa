-- Fleet's schema (PostgreSQL 15+).
--
-- The file is a list of ordered migrations. Each starts with a line `-- migrate: NNNN name`;
-- `fleet migrate` applies, in order and inside one transaction each, those not yet recorded in
-- schema_migrations, under an advisory lock so two processes never migrate at once.
-- Never edit an applied migration: append a new one.

-- migrate: 0001 core
CREATE TABLE IF NOT EXISTS installations (
    id              bigint PRIMARY KEY,
    account_login   text NOT NULL,
    account_type    text NOT NULL DEFAULT 'User',
    suspended_at    timestamptz,
    deleted_at      timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS repositories (
    id               bigint PRIMARY KEY,
    installation_id  bigint REFERENCES installations(id) ON DELETE SET NULL,
    full_name        text NOT NULL,
    default_branch   text NOT NULL DEFAULT 'main',
    private          boolean NOT NULL DEFAULT false,
    config           jsonb,
    config_sha       text,
    config_error     text,
    config_reported  text,
    removed_at       timestamptz,
    synced_at        timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX IF NOT EXISTS repositories_full_name ON repositories (lower(full_name));

CREATE TABLE IF NOT EXISTS milestones (
    repo_id      bigint NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    number       integer NOT NULL,
    title        text NOT NULL,
    description  text,
    state        text NOT NULL DEFAULT 'open',
    due_on       timestamptz,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (repo_id, number)
);

-- One row per issue; `is_task` says whether the repo config counts it as work.
CREATE TABLE IF NOT EXISTS tasks (
    repo_id          bigint NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    number           integer NOT NULL,
    issue_id         bigint,
    node_id          text,
    title            text NOT NULL DEFAULT '',
    body             text NOT NULL DEFAULT '',
    state            text NOT NULL DEFAULT 'open',
    state_reason     text,
    author           text,
    labels           text[] NOT NULL DEFAULT '{}',
    assignees        text[] NOT NULL DEFAULT '{}',
    milestone_number integer,
    parent_number    integer,
    estimate_hours   numeric(10, 2),
    priority         integer NOT NULL DEFAULT 2,
    is_task          boolean NOT NULL DEFAULT true,
    fleet_state      text,
    progress         integer,
    progress_note    text,
    gh_created_at    timestamptz,
    gh_updated_at    timestamptz,
    closed_at        timestamptz,
    deleted_at       timestamptz,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (repo_id, number)
);
CREATE INDEX IF NOT EXISTS tasks_open ON tasks (repo_id) WHERE state = 'open';

-- Edges "task depends on dep"; dep may live in another repository.
CREATE TABLE IF NOT EXISTS dependencies (
    repo_id        bigint NOT NULL,
    number         integer NOT NULL,
    dep_full_name  text NOT NULL,
    dep_number     integer NOT NULL,
    source         text NOT NULL CHECK (source IN ('body', 'native', 'command')),
    PRIMARY KEY (repo_id, number, dep_full_name, dep_number, source),
    FOREIGN KEY (repo_id, number) REFERENCES tasks(repo_id, number) ON DELETE CASCADE
);

-- Agent identity: a login, or login:name when several agents share one account.
CREATE TABLE IF NOT EXISTS agents (
    id             text PRIMARY KEY,
    login          text NOT NULL,
    name           text,
    user_type      text NOT NULL DEFAULT 'User',
    first_seen_at  timestamptz NOT NULL DEFAULT now(),
    last_seen_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS claims (
    id                bigserial PRIMARY KEY,
    repo_id           bigint NOT NULL,
    number            integer NOT NULL,
    agent_id          text NOT NULL REFERENCES agents(id),
    login             text NOT NULL,
    claimed_by        text,
    event_key         text,
    claimed_at        timestamptz NOT NULL DEFAULT now(),
    lease_expires_at  timestamptz NOT NULL,
    last_activity_at  timestamptz NOT NULL DEFAULT now(),
    warned_at         timestamptz,
    released_at       timestamptz,
    release_reason    text,
    FOREIGN KEY (repo_id, number) REFERENCES tasks(repo_id, number) ON DELETE CASCADE
);
-- The single-holder rule lives here, not in application code: a second open claim on one task
-- violates this index, whichever worker tries.
CREATE UNIQUE INDEX IF NOT EXISTS claims_one_open_per_task ON claims (repo_id, number) WHERE released_at IS NULL;
CREATE INDEX IF NOT EXISTS claims_open_by_agent ON claims (agent_id) WHERE released_at IS NULL;

CREATE TABLE IF NOT EXISTS branches (
    repo_id      bigint NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    name         text NOT NULL,
    head_sha     text,
    task_number  integer,
    agent_id     text,
    pushed_by    text,
    pushed_at    timestamptz,
    deleted_at   timestamptz,
    PRIMARY KEY (repo_id, name)
);

CREATE TABLE IF NOT EXISTS pull_requests (
    repo_id          bigint NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    number           integer NOT NULL,
    pr_id            bigint,
    node_id          text,
    title            text NOT NULL DEFAULT '',
    body             text NOT NULL DEFAULT '',
    state            text NOT NULL DEFAULT 'open',
    draft            boolean NOT NULL DEFAULT false,
    merged           boolean NOT NULL DEFAULT false,
    merged_at        timestamptz,
    merge_commit_sha text,
    author           text,
    head_ref         text,
    head_sha         text,
    head_repo        text,
    base_ref         text,
    base_sha         text,
    mergeable        boolean,
    mergeable_state  text,
    labels           text[] NOT NULL DEFAULT '{}',
    linked_tasks     integer[] NOT NULL DEFAULT '{}',
    additions        integer,
    deletions        integer,
    changed_files    integer,
    gh_created_at    timestamptz,
    gh_updated_at    timestamptz,
    closed_at        timestamptz,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (repo_id, number)
);
CREATE INDEX IF NOT EXISTS pull_requests_head_sha ON pull_requests (repo_id, head_sha);

CREATE TABLE IF NOT EXISTS reviews (
    id            bigint PRIMARY KEY,
    repo_id       bigint NOT NULL,
    pr_number     integer NOT NULL,
    reviewer      text NOT NULL,
    state         text NOT NULL,
    commit_id     text,
    submitted_at  timestamptz,
    FOREIGN KEY (repo_id, pr_number) REFERENCES pull_requests(repo_id, number) ON DELETE CASCADE
);

CREATE TABLE IF NOT EXISTS check_runs (
    id            bigint PRIMARY KEY,
    repo_id       bigint NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    head_sha      text NOT NULL,
    name          text NOT NULL,
    status        text NOT NULL,
    conclusion    text,
    app_slug      text,
    url           text,
    started_at    timestamptz,
    completed_at  timestamptz,
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS check_runs_by_sha ON check_runs (repo_id, head_sha);

CREATE TABLE IF NOT EXISTS commit_statuses (
    repo_id       bigint NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    sha           text NOT NULL,
    context       text NOT NULL,
    state         text NOT NULL,
    target_url    text,
    status_id     bigint,
    gh_updated_at timestamptz,
    PRIMARY KEY (repo_id, sha, context)
);

-- Every verified webhook, keyed by GitHub's delivery GUID (a redelivery keeps the GUID).
CREATE TABLE IF NOT EXISTS deliveries (
    id             text PRIMARY KEY,
    event          text NOT NULL,
    action         text,
    installation_id bigint,
    repo_id        bigint,
    repo_full_name text,
    payload        jsonb NOT NULL,  -- text since 0017
    status         text NOT NULL DEFAULT 'received'
                   CHECK (status IN ('received', 'queued', 'processing', 'processed', 'ignored', 'failed')),
    attempts       integer NOT NULL DEFAULT 0,
    last_error     text,
    received_at    timestamptz NOT NULL DEFAULT now(),
    enqueued_at    timestamptz,
    started_at     timestamptz,
    processed_at   timestamptz
);
CREATE INDEX IF NOT EXISTS deliveries_pending ON deliveries (received_at)
    WHERE status IN ('received', 'queued', 'processing', 'failed');

-- Everything Fleet did (or tried) on GitHub, with the outcome.
CREATE TABLE IF NOT EXISTS evidence (
    id           bigserial PRIMARY KEY,
    at           timestamptz NOT NULL DEFAULT now(),
    repo_id      bigint,
    repo_full_name text,
    delivery_id  text,
    job_id       text,
    action       text NOT NULL,
    target       text,
    outcome      text NOT NULL,
    status_code  integer,
    detail       jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS evidence_by_repo ON evidence (repo_id, at DESC);

-- Per-(repo, base) merge queue entries; see merge_queue.py for the states.
CREATE TABLE IF NOT EXISTS queue_entries (
    id               bigserial PRIMARY KEY,
    repo_id          bigint NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    base_ref         text NOT NULL,
    pr_number        integer NOT NULL,
    priority         integer NOT NULL DEFAULT 1,
    state            text NOT NULL DEFAULT 'queued',
    queued_by        text,
    queued_at        timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,
    head_sha         text,
    sha_changed_at   timestamptz,
    attempts         integer NOT NULL DEFAULT 0,
    finished_at      timestamptz,
    outcome          text,
    detail           text
);
CREATE UNIQUE INDEX IF NOT EXISTS queue_one_active_per_pr ON queue_entries (repo_id, pr_number)
    WHERE finished_at IS NULL;
-- At most one PR in flight per queue, enforced by the database for every worker on every machine.
CREATE UNIQUE INDEX IF NOT EXISTS queue_one_in_flight ON queue_entries (repo_id, base_ref)
    WHERE finished_at IS NULL AND state <> 'queued';

CREATE TABLE IF NOT EXISTS status_issues (
    repo_id       bigint PRIMARY KEY REFERENCES repositories(id) ON DELETE CASCADE,
    issue_number  integer,
    body_hash     text,
    last_edit_at  timestamptz,
    edits         integer NOT NULL DEFAULT 0,
    pinned        boolean NOT NULL DEFAULT false
);

CREATE TABLE IF NOT EXISTS progress_snapshots (
    repo_id       bigint NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    taken_at      timestamptz NOT NULL,
    epic          text NOT NULL DEFAULT '',
    tasks_total   integer NOT NULL,
    tasks_done    integer NOT NULL,
    hours_total   numeric(12, 2) NOT NULL,
    hours_done    numeric(12, 2) NOT NULL,
    PRIMARY KEY (repo_id, taken_at, epic)
);

-- Permission answers are cached briefly; GitHub is the truth.
CREATE TABLE IF NOT EXISTS permissions_cache (
    repo_id     bigint NOT NULL,
    login       text NOT NULL,
    permission  text NOT NULL,
    fetched_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (repo_id, login)
);

CREATE OR REPLACE VIEW task_dependencies AS
SELECT d.repo_id, d.number, d.dep_full_name, d.dep_number, d.source,
       dt.state AS dep_state
FROM dependencies d
JOIN repositories r ON r.id = d.repo_id
LEFT JOIN repositories dr ON lower(dr.full_name) = lower(d.dep_full_name)
LEFT JOIN tasks dt ON dt.repo_id = dr.id AND dt.number = d.dep_number;

CREATE OR REPLACE VIEW agent_status AS
SELECT a.id AS agent_id, a.login, a.name, a.last_seen_at,
       count(c.id) FILTER (WHERE c.released_at IS NULL) AS open_claims,
       min(c.lease_expires_at) FILTER (WHERE c.released_at IS NULL) AS next_lease_expiry
FROM agents a LEFT JOIN claims c ON c.agent_id = a.id
GROUP BY a.id;

CREATE OR REPLACE VIEW epic_progress AS
SELECT t.repo_id, t.milestone_number, m.title,
       count(*) AS tasks_total,
       count(*) FILTER (WHERE t.state = 'closed') AS tasks_done,
       coalesce(sum(t.estimate_hours), 0) AS hours_total,
       coalesce(sum(t.estimate_hours) FILTER (WHERE t.state = 'closed'), 0) AS hours_done
FROM tasks t LEFT JOIN milestones m ON m.repo_id = t.repo_id AND m.number = t.milestone_number
WHERE t.is_task AND t.deleted_at IS NULL
GROUP BY t.repo_id, t.milestone_number, m.title;

-- migrate: 0002 claim details
ALTER TABLE claims ADD COLUMN IF NOT EXISTS order_key bigint[];
ALTER TABLE claims ADD COLUMN IF NOT EXISTS branch text;
ALTER TABLE claims ADD COLUMN IF NOT EXISTS head_sha text;
ALTER TABLE claims ADD COLUMN IF NOT EXISTS pr_number integer;
ALTER TABLE claims ADD COLUMN IF NOT EXISTS progress integer;
ALTER TABLE claims ADD COLUMN IF NOT EXISTS progress_note text;
ALTER TABLE claims DROP COLUMN IF EXISTS event_key;
CREATE INDEX IF NOT EXISTS claims_open_expiry ON claims (lease_expires_at) WHERE released_at IS NULL;

-- migrate: 0003 merge queue
-- Everything merge_queue.QueueEntry carries beyond the first version of the table; the
-- existing `head_sha` is the head at start, `sha_changed_at` starts the CI-timeout clock.
ALTER TABLE queue_entries ADD COLUMN IF NOT EXISTS expected_head_sha text;
ALTER TABLE queue_entries ADD COLUMN IF NOT EXISTS update_requested_at timestamptz;
ALTER TABLE queue_entries ADD COLUMN IF NOT EXISTS update_attempts integer NOT NULL DEFAULT 0;
ALTER TABLE queue_entries ADD COLUMN IF NOT EXISTS reevaluations integer NOT NULL DEFAULT 0;
ALTER TABLE queue_entries ADD COLUMN IF NOT EXISTS merge_commit_sha text;
-- When the safety-net poll should step this entry again (a CI deadline, a retry's backoff).
ALTER TABLE queue_entries ADD COLUMN IF NOT EXISTS wake_at timestamptz;
ALTER TABLE queue_entries ADD COLUMN IF NOT EXISTS updated_at timestamptz NOT NULL DEFAULT now();
CREATE INDEX IF NOT EXISTS queue_entries_active ON queue_entries (repo_id, base_ref) WHERE finished_at IS NULL;

-- The fleet/gates check run Fleet published on each head: updated in place, never duplicated,
-- and not PATCHed at all when the rendered output (its digest) did not change.
CREATE TABLE IF NOT EXISTS gate_runs (
    repo_id       bigint NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    head_sha      text NOT NULL,
    pr_number     integer NOT NULL,
    check_run_id  bigint,
    digest        text,
    conclusion    text NOT NULL,
    evaluated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (repo_id, head_sha)
);
CREATE INDEX IF NOT EXISTS gate_runs_waiting ON gate_runs (evaluated_at) WHERE conclusion = 'waiting';

-- migrate: 0004 status issue body
-- The last body written, so coalescing can compare without asking GitHub.
ALTER TABLE status_issues ADD COLUMN IF NOT EXISTS body text;
ALTER TABLE status_issues ADD COLUMN IF NOT EXISTS node_id text;

-- migrate: 0005 parked deliveries
-- A delivery that used up deliveries.MAX_ATTEMPTS (failing, or killing its worker that often) is
-- parked: never re-queued again, listed by `fleet doctor` and GET /api/deliveries?status=parked,
-- re-run only on purpose with `fleet replay`. Failures that already used every attempt are parked.
ALTER TABLE deliveries DROP CONSTRAINT IF EXISTS deliveries_status_check;
ALTER TABLE deliveries ADD CONSTRAINT deliveries_status_check
    CHECK (status IN ('received', 'queued', 'processing', 'processed', 'ignored', 'failed', 'parked'));
ALTER TABLE deliveries ADD COLUMN IF NOT EXISTS parked_at timestamptz;
UPDATE deliveries SET status = 'parked', parked_at = now() WHERE status = 'failed' AND attempts >= 5;
CREATE INDEX IF NOT EXISTS deliveries_parked ON deliveries (parked_at DESC) WHERE status = 'parked';

-- migrate: 0006 tenant isolation and retention
-- GitHub answers every write to an archived repository with 403; Fleet ends its claims instead.
ALTER TABLE repositories ADD COLUMN IF NOT EXISTS archived boolean NOT NULL DEFAULT false;

-- The lease clock's per-repository backoff: a repository whose check keeps failing waits
-- (doubling) instead of failing first in every tick, and never holds up the others.
CREATE TABLE IF NOT EXISTS lease_backoff (
    repo_id     bigint PRIMARY KEY REFERENCES repositories(id) ON DELETE CASCADE,
    failures    integer NOT NULL,
    retry_at    timestamptz NOT NULL,
    last_error  text
);

-- Names a repository had before a rename, lowercased: references written with them still resolve.
ALTER TABLE repositories ADD COLUMN IF NOT EXISTS former_names text[] NOT NULL DEFAULT '{}';
CREATE INDEX IF NOT EXISTS repositories_former_names ON repositories USING gin (former_names);

-- Dependencies resolve only inside the installation, never from a public repository into a
-- private one (app/claims/store.py DEP_REPO_JOIN is the rule; this view follows it).
CREATE OR REPLACE VIEW task_dependencies AS
SELECT d.repo_id, d.number, d.dep_full_name, d.dep_number, d.source,
       dt.state AS dep_state
FROM dependencies d
JOIN repositories r ON r.id = d.repo_id
LEFT JOIN LATERAL (
    SELECT named.id FROM (
        SELECT cand.*, 0 AS former FROM repositories cand WHERE lower(cand.full_name) = lower(d.dep_full_name)
        UNION ALL
        SELECT cand.*, 1 FROM repositories cand WHERE cand.former_names @> ARRAY[lower(d.dep_full_name)]) named
    WHERE named.id = r.id OR (named.removed_at IS NULL AND named.installation_id = r.installation_id
                              AND (r.private OR NOT named.private))
    ORDER BY named.former, named.updated_at DESC
    LIMIT 1) dr ON true
LEFT JOIN tasks dt ON dt.repo_id = dr.id AND dt.number = d.dep_number;

-- Retention (jobs/retention.py) deletes old rows in batches; these keep each batch an index scan.
CREATE INDEX IF NOT EXISTS deliveries_finished ON deliveries (received_at)
    WHERE status IN ('processed', 'ignored', 'parked');
CREATE INDEX IF NOT EXISTS evidence_at ON evidence (at);
CREATE INDEX IF NOT EXISTS progress_snapshots_taken ON progress_snapshots (taken_at);

-- migrate: 0007 outsider replies
-- When Fleet last answered (replied or reacted) on an issue or PR to someone without triage
-- permission: outsiders get at most one answer per issue per interval, so comments cannot
-- spend Fleet's write budget (app/commands/handlers.py, OUTSIDER_REPLY_INTERVAL).
CREATE TABLE IF NOT EXISTS outsider_replies (
    repo_id        bigint NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    number         integer NOT NULL,
    last_reply_at  timestamptz NOT NULL,
    PRIMARY KEY (repo_id, number)
);

-- migrate: 0009 deferred deliveries
-- A delivery whose writes found the installation's GitHub write budget spent is deferred, not
-- failed (jobs/process.py): RQ runs it again at `not_before`, the deferral does not use one of
-- deliveries.MAX_ATTEMPTS (`deferrals` counts them instead), and a later delivery of the same
-- repository waits behind it so per-repository order holds.
ALTER TABLE deliveries DROP CONSTRAINT IF EXISTS deliveries_status_check;
ALTER TABLE deliveries ADD CONSTRAINT deliveries_status_check
    CHECK (status IN ('received', 'queued', 'processing', 'processed', 'ignored', 'failed', 'parked', 'deferred'));
ALTER TABLE deliveries ADD COLUMN IF NOT EXISTS not_before timestamptz;
ALTER TABLE deliveries ADD COLUMN IF NOT EXISTS deferrals integer NOT NULL DEFAULT 0;
CREATE INDEX IF NOT EXISTS deliveries_deferred ON deliveries (repo_id, received_at) WHERE status = 'deferred';

-- migrate: 0010 claims under load
-- Transient GitHub failures of a queue step's reads for the entry's current head
-- (app/queue/rules.py MAX_STEP_FAILURES): retried with backoff up to the limit, then the entry fails.
ALTER TABLE queue_entries ADD COLUMN IF NOT EXISTS step_failures integer NOT NULL DEFAULT 0;

-- migrate: 0011 held writes
-- Replies, reactions and queue labels that can wait (app/github/held_writes.py): written in the same
-- transaction as the state change that caused them when their write class found the
-- installation's budget spent, and sent in order by jobs/outbox.py once it has a slot, so a
-- comment never holds up the deliveries (and claim verdicts) behind it.
CREATE TABLE IF NOT EXISTS held_writes (
    id           bigserial PRIMARY KEY,
    repo_id      bigint NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    write_class  text NOT NULL,
    kind         text NOT NULL CHECK (kind IN ('comment', 'reaction', 'add_label', 'remove_label')),
    number       integer NOT NULL,
    comment_id   bigint,
    body         text NOT NULL,
    marker       text,
    held_at      timestamptz NOT NULL DEFAULT now(),
    attempts     integer NOT NULL DEFAULT 0,
    last_error   text
);
CREATE INDEX IF NOT EXISTS held_writes_by_repo ON held_writes (repo_id, id);

-- migrate: 0012 delayed acknowledgements
-- A held write may be due later (``not_before``): the 👍 on `/queue` waits QUEUE_ACK_DELAY and is
-- dropped when the PR leaves the queue first (the merge or the dequeue reply is the answer).
-- Such a write orders nothing: replies are held behind due writes only.
ALTER TABLE held_writes ADD COLUMN IF NOT EXISTS not_before timestamptz;

-- migrate: 0013 assignable cache
-- GitHub's "yes, this user can be assigned here" (app/github/permissions.py), remembered briefly
-- like a permission: every /claim and /next asked it again (a call per claim). A "no" is never
-- remembered: someone just added as a collaborator can be assigned at once.
CREATE TABLE IF NOT EXISTS assignable_cache (
    repo_id     bigint NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    login       text NOT NULL,
    checked_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (repo_id, login)
);

-- migrate: 0014 agents waiting for /next
-- A /next that found nothing ready waits in line (app/claims/waiting.py) instead of being answered
-- "no ready task": the next ready task is assigned to the agent that has waited longest. One row
-- per agent (account + name; '' for an unnamed agent), kept until served or `claims.next_wait`.
CREATE TABLE IF NOT EXISTS next_waiters (
    repo_id             bigint NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    login               text NOT NULL,
    agent_name          text NOT NULL DEFAULT '',
    number              integer NOT NULL,
    comment_id          bigint NOT NULL,
    comment_created_at  timestamptz,
    asked_at            timestamptz NOT NULL,
    expires_at          timestamptz NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS next_waiters_agent ON next_waiters (repo_id, lower(login), agent_name);
CREATE INDEX IF NOT EXISTS next_waiters_expiry ON next_waiters (expires_at);

-- migrate: 0015 merge groups
-- `queue.mode: groups` (app/queue/groups.py): queued PRs are merged, in queue order, into Fleet's
-- own branch `fleet/queue/<base>/<id>` on top of the base tip or of the group ahead; CI runs on
-- each group's head while up to `queue.depth` groups are under test, and the base is only ever
-- fast-forwarded to a group head whose required checks passed. One row per group; a group is
-- active until `ended_at`, and its branch is deleted once `branch_deleted_at` is set.
CREATE TABLE IF NOT EXISTS queue_groups (
    id                bigserial PRIMARY KEY,
    repo_id           bigint NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    base_ref          text NOT NULL,
    state             text NOT NULL DEFAULT 'building',
    prs               integer[] NOT NULL,
    pr_heads          text[] NOT NULL,
    parent_sha        text,
    head_sha          text,
    built_count       integer NOT NULL DEFAULT 0,
    -- Per PR, the commit on the group that carries it (its merge commit, or its squashed commit)
    -- and, while building a squashed group, the tree its merge produced.
    carriers          text[] NOT NULL DEFAULT '{}',
    trees             text[] NOT NULL DEFAULT '{}',
    squashed          boolean NOT NULL DEFAULT false,
    broken            text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    tested_since      timestamptz,
    ended_at          timestamptz,
    outcome           text,
    detail            text,
    branch_deleted_at timestamptz
);
CREATE INDEX IF NOT EXISTS queue_groups_active ON queue_groups (repo_id, base_ref, id) WHERE ended_at IS NULL;
CREATE INDEX IF NOT EXISTS queue_groups_by_head ON queue_groups (repo_id, head_sha) WHERE ended_at IS NULL;
CREATE INDEX IF NOT EXISTS queue_groups_branch_left ON queue_groups (repo_id, base_ref)
    WHERE ended_at IS NOT NULL AND branch_deleted_at IS NULL;
-- A failed group of several PRs is split: its PRs are tested in groups of at most this many.
ALTER TABLE queue_entries ADD COLUMN IF NOT EXISTS batch_limit integer;
-- Failed groups it was in that were built again to re-run the checks (`queue.retries`).
ALTER TABLE queue_entries ADD COLUMN IF NOT EXISTS group_retries integer NOT NULL DEFAULT 0;
-- Why a queue that is configured for groups runs serially (the base refused Fleet's push).
CREATE TABLE IF NOT EXISTS queue_serial_fallbacks (
    repo_id   bigint NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    base_ref  text NOT NULL,
    reason    text NOT NULL,
    since     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (repo_id, base_ref)
);

-- migrate: 0016 delivery lanes
-- Deliveries are drained per lane (their repository; 0 for none) by one job at a time, oldest
-- first (jobs/process.py drain_lane): this index serves the drain's "what is due in my lane".
CREATE INDEX IF NOT EXISTS deliveries_lane ON deliveries ((coalesce(repo_id, 0)), received_at, id)
    WHERE status IN ('received', 'queued', 'deferred', 'failed');
-- Payloads are stored as GitHub sent them, up to thousands a second in a burst: lz4 compresses
-- them at a fraction of pglz's cost (a server built without lz4 keeps pglz).
DO $$ BEGIN
    ALTER TABLE deliveries ALTER COLUMN payload SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported OR syntax_error THEN NULL;
END $$;

-- migrate: 0017 payloads as text
-- The payload is kept as the JSON text GitHub sent (ingest has parsed and checked it): as jsonb,
-- Postgres parsed every 10 KB payload again on the way in and printed it on the way out, about
-- half of its CPU per delivery in a burst (bench/RESULTS.md). Rewrites the table once.
ALTER TABLE deliveries ALTER COLUMN payload TYPE text;
DO $$ BEGIN
    ALTER TABLE deliveries ALTER COLUMN payload SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported OR syntax_error THEN NULL;
END $$;
