//! SQL assembled from parts, as `macro_rules!` so that each statement is still one `&'static str`:
//! the column lists that several reads share, and the conditions the dialects build on.

// SQL that is assembled from parts (the rest is written inline where it runs)

/// The columns of a [`ConversationDb`], then `WHERE` with `$cond` and the dialect's `$lock`.
macro_rules! conversation_sql {
    ($cond:literal, $lock:literal) => {
        concat!(
            "SELECT id, caregiver_id, channel, address, flow_id, flow_rev, status, state, ",
            "wake_at, started_at FROM conversations WHERE ",
            $cond,
            " ",
            $lock
        )
    };
}
pub(crate) use conversation_sql;

/// The columns of an [`EscalationDb`], then `WHERE` with `$cond` and the dialect's `$lock`.
macro_rules! escalation_sql {
    ($cond:literal, $lock:literal) => {
        concat!(
            "SELECT id, caregiver_id, flow_id, priority, reason, answer, message, status, level, ",
            "supervisor_id, template, context, when_taken_up, caregiver_consent, resends, ",
            "raised_at, acknowledged_at, closed_at, due_at FROM escalations WHERE ",
            $cond,
            " ",
            $lock
        )
    };
}
pub(crate) use escalation_sql;

/// The escalations on supervisor `$1`'s desk: routed to them (at any level), not closed
/// before `$2`. A reply or a digest narrows them down further.
macro_rules! desk_ids {
    () => {
        "SELECT e.id FROM escalations e WHERE e.id IN (SELECT escalation_id \
         FROM escalation_contacts WHERE supervisor_id = $1) \
         AND (e.status <> 'done' OR e.closed_at >= $2)"
    };
}

/// The columns of a [`ContactDb`] for supervisor `s`: the one place a supervisor's channel is
/// chosen. Today an alert goes to the supervisor's phone by SMS; Telegram (issue 4) adds a
/// linked chat here, preferred over the phone when the supervisor has one.
macro_rules! contact_columns {
    () => {
        concat!(
            "s.id, s.external_id, s.name, s.timezone, ",
            "CASE WHEN ",
            supervisor_telegram!(),
            " IS NULL THEN 'sms' ELSE 'telegram' END AS channel, ",
            "COALESCE(",
            supervisor_telegram!(),
            ", s.phone) AS address, ",
            "(",
            supervisor_telegram!(),
            " IS NULL AND EXISTS (SELECT 1 FROM subscriptions sub WHERE sub.channel = 'sms' ",
            "AND sub.address = s.phone AND sub.status = 'opted_out')) AS opted_out"
        )
    };
}

/// Supervisor `s`'s linked Telegram chat, if it is open to us: where their alerts go then
/// (see `model::supervisor_address`), else their phone.
macro_rules! supervisor_telegram {
    () => {
        "(SELECT l.address FROM supervisor_links l JOIN subscriptions x \
         ON x.channel = l.channel AND x.address = l.address WHERE l.supervisor_id = s.id \
         AND l.channel = 'telegram' AND x.status = 'opted_in' \
         ORDER BY l.created_at DESC LIMIT 1)"
    };
}

/// Why a queued message must not go out after all; see [`Store::claim_outbound`]. A consent
/// confirmation goes out even after STOP (it is the one message allowed), and an alert to a
/// supervisor does not depend on the caregiver it is about still being active. A message
/// whose text is '[erased]' was being sent to or about a caregiver when they were erased
/// (`carebot caregiver erase`), and was then put back by a retry or a quiet-hours deferral:
/// whatever its kind, it has nothing left to say.
macro_rules! suppress_sql {
    () => {
        "(outbound_messages.body = '[erased]' \
        OR (kind <> 'consent' AND EXISTS (SELECT 1 FROM subscriptions s \
            WHERE s.channel = outbound_messages.channel \
            AND s.address = outbound_messages.address AND s.status = 'opted_out')) \
        OR (kind IN ('reply', 'program') AND EXISTS (SELECT 1 FROM caregivers c \
            WHERE c.id = outbound_messages.caregiver_id AND NOT c.active)) \
        OR (channel = 'sms' AND EXISTS (SELECT 1 FROM caregivers c \
            WHERE c.phone = outbound_messages.address AND c.phone_invalid)))"
    };
}
pub(crate) use suppress_sql;

/// Claims queued messages of channel `$1` due at `$2`, at most `$3`, in one statement. `$lock`
/// is PostgreSQL's `FOR UPDATE SKIP LOCKED`, so that dispatchers on several instances take
/// disjoint rows without waiting on each other; SQLite has one writer and needs none. `$kinds`
/// narrows the claim (`"AND kind <> 'program' "` walks the partial index of migration 0007).
macro_rules! claim_outbound_sql {
    ($lock:literal, $kinds:literal) => {
        concat!(
            "UPDATE outbound_messages SET status = CASE WHEN ",
            $crate::store::sql::suppress_sql!(),
            " THEN 'suppressed' ELSE 'sending' END, attempts = CASE WHEN ",
            $crate::store::sql::suppress_sql!(),
            " THEN attempts ELSE attempts + 1 END, updated_at = $2 ",
            "WHERE id IN (SELECT id FROM outbound_messages WHERE channel = $1 ",
            // `not_before, id`: the order of the partial index `outbound_messages_queue`
            // (migration 0006), so a claim reads its rows off the index and stops at the
            // limit instead of sorting the whole due backlog.
            "AND status = 'queued' AND not_before <= $2 ",
            $kinds,
            "ORDER BY not_before, id LIMIT $3 ",
            $lock,
            ") RETURNING id, channel, address, caregiver_id, kind, body, segments, attempts, ",
            "buttons, status, created_at, conversation_id"
        )
    };
}
pub(crate) use claim_outbound_sql;

/// The columns of a [`CaregiverDb`], from `caregivers c` joined to its supervisor, without a
/// `WHERE`: shared by [`caregivers_where!`] and the batched start path (`sql/starts.rs`).
macro_rules! caregivers_select {
    () => {
        concat!(
            "SELECT c.id, c.external_id, c.first_name, c.last_name, c.phone, ",
            "c.timezone, c.branch, c.consent_at, c.active, c.fields, c.tags, ",
            "s.id AS sup_id, s.external_id AS sup_external_id, s.name AS sup_name, ",
            "s.phone AS sup_phone, s.timezone AS sup_timezone, ",
            $crate::store::sql::reach_columns!(),
            "FROM caregivers c ",
            "LEFT JOIN supervisors s ON s.external_id = c.supervisor_external_id"
        )
    };
}

/// The caregivers matched by `$cond` (over `caregivers c`) with their supervisor, and the
/// groups of the same caregivers: two statements, so that loading 100,000 caregivers is two
/// scans and not one query per caregiver.
macro_rules! caregivers_where {
    ($cond:literal) => {
        (
            concat!(caregivers_select!(), " WHERE ", $cond, " ORDER BY c.id"),
            concat!(
                "SELECT g.caregiver_id, g.name FROM caregiver_groups g ",
                "WHERE g.caregiver_id IN (SELECT c.id FROM caregivers c WHERE ",
                $cond,
                ") ORDER BY g.caregiver_id, g.name"
            ),
        )
    };
}

/// The columns of a caregiver's [`Reach`] and of their supervisor's Telegram chat, over
/// `caregivers c` and `supervisors s` (see `caregivers_where!`). The language a caregiver chose
/// themselves wins over the roster's. A caller that knows the SMS consent already gives the
/// expression for that column instead of the lookup.
macro_rules! reach_columns {
    () => {
        $crate::store::sql::reach_columns!(
            "(SELECT x.status FROM subscriptions x WHERE x.channel = 'sms' AND x.address = c.phone)"
        )
    };
    ($sms_consent:literal) => {
        concat!(
            "COALESCE(c.chosen_language, c.language) AS chosen_language, ",
            "c.preferred_channel, c.last_channel, ",
            $sms_consent,
            " AS sms_consent, ",
            "(SELECT l.address FROM caregiver_links l WHERE l.caregiver_id = c.id ",
            "AND l.channel = 'telegram' ORDER BY l.created_at DESC LIMIT 1) AS telegram_chat, ",
            "(SELECT x.status FROM caregiver_links l JOIN subscriptions x ",
            "ON x.channel = l.channel AND x.address = l.address WHERE l.caregiver_id = c.id ",
            "AND l.channel = 'telegram' ORDER BY l.created_at DESC LIMIT 1) AS telegram_consent, ",
            "(SELECT l.address FROM supervisor_links l JOIN subscriptions x ",
            "ON x.channel = l.channel AND x.address = l.address WHERE l.supervisor_id = s.id ",
            "AND l.channel = 'telegram' AND x.status = 'opted_in' ",
            "ORDER BY l.created_at DESC LIMIT 1) AS sup_telegram "
        )
    };
}
pub(crate) use reach_columns;
