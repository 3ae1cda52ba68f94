-- @summary Separation of duties, test-before-production, emergency-change, state-machine and exception findings.
-- @group stage5_testing_authorization
-- @depends ledger.exceptions, ledger.patch_tests, ledger.tamper_findings
-- @depends marts.authorization_events, staging.exceptions, staging.patch_tests
-- @table Change-control findings of stage 5 as of $as_of, one row per finding: separation of duties, test before production authorization, emergency changes, the state machine and exceptions.
-- Rules (SOX ITGC change management, GTAG 2; compliance.md 1, 2.1, 3 section 8):
--   sod_tester_approver       high    the approver of an authorization signed a test of that patch in the scope's category
--   sod_requester_approver    high    the approver of an authorization is the scope's requester
--   production_without_test   high    production authorization (environment production or *) with no
--                                     passing test in the same category that ended before it, unless emergency
--   emergency_without_pir     medium  emergency authorization without a post-implementation review within
--                                     $pir_window_days days (only once the window has passed)
--   illegal_transition        medium  a transition outside the legal table, or from_state is not the state the scope was in
--   exception_expired_active  high    an exception still active after its expires_at
--   exception_self_approved   high    an exception approved by the person who requested it
--   exception_without_expiry  medium  an active exception with no expires_at
--   exception_unapproved      medium  an active exception with no approver
--   register_tampered         high    a ledgered register row changed, removed, reordered or inserted between
--                                     recorded rows after it was first recorded (ledger.tamper_findings)
-- Every rule reads the registers as first recorded (staging tables rebuilt from the ledger), and
-- only tests started and exceptions approved by the end of $as_of.
-- @column finding_id: Stable id: sha256 of rule, '|' and subject.
-- @column rule: The rule that found it (list in the table header).
-- @column severity: high, medium or low.
-- @column subject: What the finding is about: authorization_event/<event_id>, exception/<exception_id> or tamper_finding/<ledger.tamper_findings finding_id>.
-- @column patch_key: The patch, when there is one.
-- @column asset_category: The scope's category (or the exception's), when there is one.
-- @column environment: The scope's environment, when there is one.
-- @column vm_id: The VM, when the finding is about one.
-- @column criteria: The requirement, with its source.
-- @column condition: What was found, in one sentence.
-- @column evidence: JSON with the ids and times the condition rests on.
WITH cutoff AS (
    SELECT CAST(CAST($as_of AS DATE) + INTERVAL 1 DAY AS TIMESTAMPTZ) AS at
),
authorizations AS (
    SELECT * FROM marts.authorization_events WHERE to_state = 'authorized'
),
tests AS (
    SELECT t.* FROM staging.patch_tests AS t, cutoff
    WHERE t.started_at IS NULL OR t.started_at < cutoff.at
),
exceptions AS (
    SELECT x.* FROM staging.exceptions AS x, cutoff
    WHERE x.approved_at IS NULL OR x.approved_at < cutoff.at
),
tester_approver AS (
    SELECT a.event_id, a.patch_key, a.asset_category, a.environment, a.actor, a.occurred_at,
           list(t.test_id ORDER BY t.test_id) AS test_ids
    FROM authorizations AS a
    JOIN tests AS t
        ON t.patch_key = a.patch_key
       AND (a.asset_category = '*' OR t.asset_category = a.asset_category)
       AND lower(t.tester) = lower(a.actor)
    GROUP BY ALL
),
passing_tests AS (
    SELECT a.event_id, count(t.test_id) AS passing_before
    FROM authorizations AS a
    LEFT JOIN tests AS t
        ON t.patch_key = a.patch_key
       AND (a.asset_category = '*' OR t.asset_category = a.asset_category)
       AND t.result = 'passed'
       AND coalesce(t.ended_at, t.started_at) <= a.occurred_at
    WHERE a.environment IN ('production', '*') AND NOT coalesce(a.emergency, false)
    GROUP BY a.event_id
),
reviews AS (
    SELECT a.event_id, min(e.pir_completed_at) AS pir_completed_at
    FROM authorizations AS a
    LEFT JOIN marts.authorization_events AS e
        ON e.patch_key = a.patch_key AND e.asset_category = a.asset_category
       AND e.environment = a.environment AND e.scope_seq >= a.scope_seq
    WHERE a.emergency
    GROUP BY a.event_id
),
findings AS (
    SELECT 'sod_tester_approver' AS rule, 'high' AS severity,
           'authorization_event/' || event_id AS subject,
           patch_key, asset_category, environment, NULL AS vm_id,
           'SOX ITGC segregation of duties (GTAG 2): the tester of a change must not approve it' AS criteria,
           format('{} authorized patch {} for {}/{} on {} and signed its test(s) {}', actor,
                  patch_key, asset_category, environment, strftime(occurred_at, '%Y-%m-%dT%H:%M:%SZ'),
                  array_to_string(test_ids, ', ')) AS condition,
           json_object('event_id', event_id, 'approver', actor, 'test_ids', test_ids,
                       'authorized_at', occurred_at) AS evidence
    FROM tester_approver

    UNION ALL
    SELECT 'sod_requester_approver', 'high', 'authorization_event/' || event_id,
           patch_key, asset_category, environment, NULL,
           'SOX ITGC segregation of duties: the requester of a change must not approve it',
           format('{} requested and authorized patch {} for {}/{} (authorized {})', actor,
                  patch_key, asset_category, environment, strftime(occurred_at, '%Y-%m-%dT%H:%M:%SZ')),
           json_object('event_id', event_id, 'requester', requester, 'approver', actor,
                       'authorized_at', occurred_at)
    FROM authorizations
    WHERE lower(actor) = lower(requester)

    UNION ALL
    SELECT 'production_without_test', 'high', 'authorization_event/' || a.event_id,
           a.patch_key, a.asset_category, a.environment, NULL,
           'SOX ITGC testing evidence; NIST SP 800-53 SI-2(b), CM-3(2): a change is tested before it is approved for production',
           format('patch {} was authorized for {}/{} on {} without a passing test in {} that ended before it',
                  a.patch_key, a.asset_category, a.environment,
                  strftime(a.occurred_at, '%Y-%m-%dT%H:%M:%SZ'),
                  CASE WHEN a.asset_category = '*' THEN 'any category' ELSE a.asset_category END),
           json_object('event_id', a.event_id, 'approver', a.actor, 'authorized_at', a.occurred_at,
                       'emergency', coalesce(a.emergency, false))
    FROM authorizations AS a JOIN passing_tests AS p USING (event_id)
    WHERE p.passing_before = 0

    UNION ALL
    SELECT 'emergency_without_pir', 'medium', 'authorization_event/' || a.event_id,
           a.patch_key, a.asset_category, a.environment, NULL,
           format('SOX ITGC emergency changes: a post-implementation review within {} days', $pir_window_days),
           CASE WHEN r.pir_completed_at IS NULL
                THEN format('emergency authorization of patch {} for {}/{} on {} has no post-implementation review',
                            a.patch_key, a.asset_category, a.environment,
                            strftime(a.occurred_at, '%Y-%m-%dT%H:%M:%SZ'))
                ELSE format('emergency authorization of patch {} for {}/{} on {} was reviewed only on {}',
                            a.patch_key, a.asset_category, a.environment,
                            strftime(a.occurred_at, '%Y-%m-%dT%H:%M:%SZ'),
                            strftime(r.pir_completed_at, '%Y-%m-%dT%H:%M:%SZ'))
           END,
           json_object('event_id', a.event_id, 'authorized_at', a.occurred_at,
                       'pir_completed_at', r.pir_completed_at,
                       'review_due', a.occurred_at + to_days(CAST($pir_window_days AS INTEGER)))
    FROM authorizations AS a JOIN reviews AS r USING (event_id), cutoff
    WHERE (r.pir_completed_at IS NULL
           AND a.occurred_at + to_days(CAST($pir_window_days AS INTEGER)) < cutoff.at)
       OR r.pir_completed_at > a.occurred_at + to_days(CAST($pir_window_days AS INTEGER))

    UNION ALL
    SELECT 'illegal_transition', 'medium', 'authorization_event/' || event_id,
           patch_key, asset_category, environment, NULL,
           'Authorization state machine (sql/authorization_events.sql): only legal transitions, each from the current state',
           format('event {} moves patch {} for {}/{} from {} to {} while the scope was {}', event_id,
                  patch_key, asset_category, environment, coalesce(from_state, '(none)'), to_state,
                  coalesce(previous_state, '(none)')),
           json_object('event_id', event_id, 'from_state', from_state, 'to_state', to_state,
                       'previous_state', previous_state, 'transition_legal', transition_legal,
                       'from_state_matches', from_state_matches, 'occurred_at', occurred_at)
    FROM marts.authorization_events
    WHERE NOT transition_legal OR NOT from_state_matches

    UNION ALL
    SELECT 'exception_expired_active', 'high', 'exception/' || exception_id,
           patch_key, asset_category, NULL, vm_id,
           'Risk acceptances expire (NIST SP 800-40r4 2.1 risk responses; ISO/IEC 27001:2022 A.8.8): an exception past expires_at is no longer valid',
           format('exception {} expired on {} and is still active', exception_id,
                  strftime(expires_at, '%Y-%m-%dT%H:%M:%SZ')),
           json_object('exception_id', exception_id, 'expires_at', expires_at, 'status', status,
                       'risk_owner', risk_owner)
    FROM exceptions, cutoff
    WHERE status = 'active' AND expires_at < cutoff.at

    UNION ALL
    SELECT 'exception_self_approved', 'high', 'exception/' || exception_id,
           patch_key, asset_category, NULL, vm_id,
           'Segregation of duties: an exception is approved by someone other than its requester',
           format('exception {} was requested and approved by {}', exception_id, approver),
           json_object('exception_id', exception_id, 'requested_by', requested_by,
                       'approver', approver, 'approved_at', approved_at)
    FROM exceptions
    WHERE lower(approver) = lower(requested_by)

    UNION ALL
    SELECT 'exception_without_expiry', 'medium', 'exception/' || exception_id,
           patch_key, asset_category, NULL, vm_id,
           'Risk acceptances carry an expiry date (NIST SP 800-40r4 2.1 risk responses; ISO/IEC 27001:2022 A.8.8)',
           format('active exception {} has no expires_at', exception_id),
           json_object('exception_id', exception_id, 'status', status)
    FROM exceptions
    WHERE status = 'active' AND expires_at IS NULL

    UNION ALL
    SELECT 'exception_unapproved', 'medium', 'exception/' || exception_id,
           patch_key, asset_category, NULL, vm_id,
           'Risk acceptances are approved (NIST SP 800-40r4 2.1 risk responses; ISO/IEC 27001:2022 A.8.8)',
           format('active exception {} has no approver', exception_id),
           json_object('exception_id', exception_id, 'requested_by', requested_by)
    FROM exceptions
    WHERE status = 'active' AND approver IS NULL

    UNION ALL
    SELECT 'register_tampered', 'high', 'tamper_finding/' || finding_id,
           NULL, NULL, NULL, NULL,
           'Records of approvals, tests and exceptions are not altered after the fact (SOX ITGC; controls are judged on the first-recorded row)',
           format('registers/{}.csv row {} was {} after it was first recorded: {}', register, row_id, kind,
                  array_to_string(list_transform(CAST(details -> '$.changes' AS JSON[]),
                      lambda c: format('{} recorded {} now {}', c ->> 'field',
                                  coalesce(c ->> 'recorded', '(none)'), coalesce(c ->> 'new', '(none)'))), '; ')),
           json_object('register', register, 'row_id', row_id, 'kind', kind,
                       'ledger_seq', ledger_seq, 'changes', details -> '$.changes')
    FROM ledger.tamper_findings
)
SELECT sha256(rule || '|' || subject) AS finding_id, rule, severity, subject, patch_key,
       asset_category, environment, CAST(vm_id AS VARCHAR) AS vm_id, criteria, condition,
       CAST(evidence AS VARCHAR) AS evidence
FROM findings
ORDER BY rule, subject
