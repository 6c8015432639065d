-- Data breach incidents (PDPA s26A-E): from the moment the organisation became
-- aware of a suspected breach to the decisions it closed with, so the two
-- clocks (assess within 30 days of awareness; notify the PDPC within 3
-- calendar days of assessing it notifiable) can be shown kept, and overdue
-- ones found. Never a number: the affected individuals are keyed hashes (as
-- audit_log.subject_hash), resolved to numbers only into an encrypted file.
CREATE TABLE incidents (
    id                      uuid PRIMARY KEY,
    title                   text NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
    aware_at                timestamptz NOT NULL,
    assess_due_at           timestamptz NOT NULL CHECK (assess_due_at >= aware_at),
    status                  text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'assessed', 'closed')),
    opened_by               text NOT NULL,
    scope_actor             text,
    scope_from              timestamptz,
    scope_until             timestamptz,
    scoped_at               timestamptz,
    affected                integer CHECK (affected >= 0),
    affected_source         text CHECK (affected_source IN ('ledger', 'operator')),
    assessed_at             timestamptz,
    assessed_by             text,
    significant_harm        boolean,
    notifiable              boolean,
    pdpc_due_at             timestamptz,
    pdpc_notified_at        timestamptz,
    pdpc_reference          text CHECK (length(pdpc_reference) <= 100),
    individuals_notified_at timestamptz,
    individuals_exemption   text CHECK (length(individuals_exemption) <= 1000),
    closed_at               timestamptz,
    closed_by               text,
    decision                text CHECK (length(decision) <= 2000),
    notes                   text CHECK (length(notes) <= 2000),
    created_at              timestamptz NOT NULL DEFAULT now(),
    CHECK ((status = 'closed') = (closed_at IS NOT NULL)),
    CHECK (status = 'open' OR assessed_at IS NOT NULL),
    CHECK (notifiable IS NOT TRUE OR pdpc_due_at IS NOT NULL)
);
CREATE INDEX incidents_unclosed ON incidents (assess_due_at) WHERE status <> 'closed';

CREATE TABLE incident_subjects (
    incident_id  uuid NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
    subject_hash bytea NOT NULL CHECK (length(subject_hash) = 32),
    PRIMARY KEY (incident_id, subject_hash)
);
