//! The Store seam's contract, written once and run against every backend: each scenario runs
//! on SQLite (a fresh file) and on PostgreSQL (a fresh schema), as `sqlite::NAME` and
//! `postgres::NAME`.

use imagegate::domain::task::{TaskMode, TaskStatus};
use imagegate::store::{
    AttemptOutcome, CancelOutcome, Created, DeliveryAttempt, ImageRecord, Lease, LimitHit, Limits, NewTask, NewWebhook,
    Reservation, Store, TaskRecord, WebhookTarget,
};
use serde_json::json;
use std::sync::Arc;

async fn sqlite() -> (Arc<dyn Store>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("s.db").display());
    (imagegate::store::open(&url, imagegate::domain::durability::Durability::Process).await.unwrap(), dir)
}

async fn postgres() -> (Arc<dyn Store>, crate::support::pg::Schema) {
    let schema = crate::support::pg::Schema::new().await;
    let store = imagegate::store::open(&schema.url, imagegate::domain::durability::Durability::Process).await;
    (store.expect("the store opens on a fresh schema"), schema)
}

/// Each scenario, once per backend.
macro_rules! on_every_backend {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let (store, _dir) = super::sqlite().await;
                super::$name(store).await;
            })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let (store, _schema) = super::postgres().await;
                super::$name(store).await;
            })*
        }
    };
}

on_every_backend!(
    upstream_jobs_take_their_lines_atomically_and_flex_tasks_fall_back_by_deadline,
    batches_are_driven_by_one_lease_holder_and_a_cancel_wins_over_its_step,
    batch_lines_wait_until_no_realtime_task_is_queued,
    files_are_kept_per_owner_listed_newest_first_and_deleted_once,
    inputs_are_written_with_their_task_and_swept_only_when_no_live_input_shares_their_blob,
    many_workers_claiming_at_once_take_each_task_once,
    a_cancel_racing_a_completion_ends_the_task_once,
    expired_images_are_swept_with_their_variants_and_stop_being_live,
    exports_are_owed_with_the_images_and_claimed_by_one_exporter_at_a_time,
    channel_slots_are_held_until_released_or_their_lease_runs_out,
    a_rate_lets_a_burst_through_then_one_per_interval,
    reads_are_scoped_to_the_owner,
    idempotency_keys_match_same_body_conflict_on_other_and_expire_after_a_day,
    a_task_is_claimed_by_one_worker_and_fenced_by_its_lease,
    a_task_written_claimed_is_held_by_its_worker_and_reclaimed_when_its_lease_runs_out,
    claims_take_the_oldest_task_and_released_tasks_come_back,
    two_claims_of_one_task_by_the_same_process_are_fenced_apart,
    keys_are_found_by_hash_and_revocation_sticks,
    claims_are_fair_across_owners,
    cancelling_a_queued_task_ends_it_and_owes_its_webhook_in_the_same_step,
    cancelling_a_running_task_asks_its_worker_through_the_lease,
    the_outbox_redelivers_on_schedule_and_logs_every_attempt,
    reservations_are_charged_for_delivered_images_and_refunded_otherwise,
    limits_are_checked_when_the_task_is_created,
    concurrent_submits_committed_together_each_see_the_ones_before,
    concurrent_completions_committed_together_keep_their_own_fencing,
    queued_tasks_learn_their_place_in_the_queue_when_written,
);

fn task(owner: &str, idem: Option<(&str, &str)>, at: i64) -> NewTask {
    NewTask {
        id: imagegate::domain::ids::task_id(),
        owner: owner.into(),
        mode: TaskMode::Sync,
        model: "nano-banana-pro".into(),
        request: json!({"prompt": "p"}),
        idempotency: idem.map(|(k, h)| (k.to_string(), h.to_string())),
        webhook: None,
        reservation: Reservation { images: 1, cost_usd: 0.134, day: "2026-11-25".into() },
        limits: Limits::default(),
        created_at_ms: at,
        claimed: None,
        inputs: Vec::new(),
        batch: None,
        lane: 0,
        deadline_at: None,
        request_id: None,
    }
}

fn no_webhook(_: &TaskRecord) -> Option<NewWebhook> {
    None
}

/// A webhook for every state change, tagged with the status it saw.
fn every_change(t: &TaskRecord) -> Option<NewWebhook> {
    Some(NewWebhook {
        id: format!("msg_{}_{}", t.id, t.status),
        event_type: format!("task.{}", t.status),
        url: "https://example.com/hook".into(),
        payload: format!("{{\"status\":\"{}\"}}", t.status),
    })
}

fn created(c: Created) -> imagegate::store::TaskRecord {
    match c {
        Created::New { task, .. } => task,
        other => panic!("expected a new task, got {other:?}"),
    }
}

async fn reads_are_scoped_to_the_owner(s: Arc<dyn Store>) {
    let t = created(s.create_task(task("key_a", None, 1000)).await.unwrap());
    assert_eq!(s.get_task("key_a", &t.id).await.unwrap().unwrap().status, TaskStatus::Queued);
    assert!(s.get_task("key_b", &t.id).await.unwrap().is_none());
    assert!(s.list_tasks("key_b", None, None, 10).await.unwrap().is_empty());
}

async fn idempotency_keys_match_same_body_conflict_on_other_and_expire_after_a_day(s: Arc<dyn Store>) {
    let t = created(s.create_task(task("key_a", Some(("k", "h1")), 1000)).await.unwrap());
    match s.create_task(task("key_a", Some(("k", "h1")), 2000)).await.unwrap() {
        Created::Existing(e) => assert_eq!(e.id, t.id),
        other => panic!("{other:?}"),
    }
    assert_eq!(s.create_task(task("key_a", Some(("k", "h2")), 2000)).await.unwrap(), Created::Conflict);
    created(s.create_task(task("key_b", Some(("k", "h2")), 2000)).await.unwrap());
    let (found, hash) = s.find_idempotent("key_a", "k", 3000).await.unwrap().expect("found before any write");
    assert_eq!((found.id.as_str(), hash.as_str()), (t.id.as_str(), "h1"));
    assert!(s.find_idempotent("key_c", "k", 3000).await.unwrap().is_none(), "scoped to the owner");
    let later = 1000 + imagegate::store::IDEMPOTENCY_WINDOW_MS + 1;
    assert!(s.find_idempotent("key_a", "k", later).await.unwrap().is_none(), "forgotten after the window");
    let fresh = created(s.create_task(task("key_a", Some(("k", "h2")), later)).await.unwrap());
    assert_ne!(fresh.id, t.id);
    assert!(s.get_task("key_a", &t.id).await.unwrap().is_some(), "the old task keeps its record");
}

async fn a_task_is_claimed_by_one_worker_and_fenced_by_its_lease(s: Arc<dyn Store>) {
    let t = created(s.create_task(task("key_a", None, 1000)).await.unwrap());
    let (a, b) = tokio::join!(s.claim_task("w1", 5000, 6000), s.claim_task("w2", 5000, 6000));
    let claims: Vec<_> = [a.unwrap(), b.unwrap()].into_iter().flatten().collect();
    assert_eq!(claims.len(), 1, "exactly one claim");
    let holder = if s.renew_lease(&t.id, "w1", 6500).await.unwrap() == Lease::Held { "w1" } else { "w2" };
    let other = if holder == "w1" { "w2" } else { "w1" };
    assert_eq!(claims[0].attempts, 1);
    assert_eq!(claims[0].status, TaskStatus::Running);

    // The lease runs out: another worker takes over and the first is fenced off.
    assert!(s.claim_task(other, 6000, 7000).await.unwrap().is_none(), "lease still valid at 6000");
    let again = s.claim_task(other, 6600, 9000).await.unwrap().unwrap();
    assert_eq!(again.id, t.id);
    assert_eq!(again.attempts, 2);
    assert_eq!(s.renew_lease(&t.id, holder, 9999).await.unwrap(), Lease::Lost);
    assert!(s.complete_task(&t.id, holder, &json!({}), &[], 1, 7000, every_change).await.unwrap().is_none());
    assert!(s.fail_task(&t.id, holder, &json!({}), 1, 7000, every_change).await.unwrap().is_none());
    assert!(s.claim_webhooks("d", 99_999, 100_000, 10).await.unwrap().is_empty(), "a fenced-off end owes nothing");

    let img = ImageRecord {
        id: imagegate::domain::ids::image_id(),
        task_id: t.id.clone(),
        owner: "key_a".into(),
        blob_key: "img_x.jpeg".into(),
        content_type: "image/jpeg".into(),
        bytes: 10,
        width: 1,
        height: 1,
        etag: "\"e\"".into(),
        created_at_ms: 7000,
        expires_at: 99,
        cost_usd: 0.134,
    };
    let ended = s
        .complete_task(&t.id, other, &json!({"data": []}), std::slice::from_ref(&img), 3, 7000, no_webhook)
        .await
        .unwrap()
        .expect("the lease holder ends the task");
    assert!(!ended.webhook_queued && !ended.exports_owed, "no webhook asked, no export destination");
    let done = s.get_task("key_a", &t.id).await.unwrap().unwrap();
    assert_eq!(ended.task, done, "the ended record is the task as stored");
    assert_eq!(done.status, TaskStatus::Completed);
    assert_eq!(done.result, Some(json!({"data": []})));
    assert_eq!(done.attempts, 1 + 3, "one cut-off run, then three upstream tries");
    assert_eq!(s.get_image(&img.id).await.unwrap(), Some(img));
    assert!(s.claim_task("w3", 99_999, 100_000).await.unwrap().is_none(), "ended tasks are never claimed");
    assert_eq!(s.count_unfinished().await.unwrap(), 0);
}

async fn a_task_written_claimed_is_held_by_its_worker_and_reclaimed_when_its_lease_runs_out(s: Arc<dyn Store>) {
    let Created::New { task: t, .. } =
        s.create_task(NewTask { claimed: Some(("w1".into(), 5000)), ..task("key_a", None, 1000) }).await.unwrap()
    else {
        panic!("not created")
    };
    assert_eq!((t.status, t.attempts, t.started_at_ms), (TaskStatus::Running, 1, Some(1000)));
    assert!(s.claim_task("w2", 2000, 9000).await.unwrap().is_none(), "not in the queue while its lease holds");
    assert_eq!(s.renew_lease(&t.id, "w1", 6000).await.unwrap(), Lease::Held);
    // The worker dies: after the lease, another worker takes it over, and the first is fenced off.
    let again = s.claim_task("w2", 6500, 9000).await.unwrap().unwrap();
    assert_eq!((again.id.as_str(), again.attempts), (t.id.as_str(), 2));
    assert!(s.complete_task(&t.id, "w1", &json!({}), &[], 1, 7000, no_webhook).await.unwrap().is_none());
    assert!(s.complete_task(&t.id, "w2", &json!({}), &[], 1, 7000, no_webhook).await.unwrap().is_some());
}

async fn claims_take_the_oldest_task_and_released_tasks_come_back(s: Arc<dyn Store>) {
    let first = created(s.create_task(task("key_a", None, 1000)).await.unwrap());
    let second = created(s.create_task(task("key_a", None, 2000)).await.unwrap());
    let c = s.claim_task("w1/c1", 3000, 4000).await.unwrap().unwrap();
    assert_eq!(c.id, first.id);
    assert!(!s.release_task(&first.id, "w1/other", 3100).await.unwrap(), "only its claim releases it");
    assert!(s.release_task(&first.id, "w1/c1", 3100).await.unwrap());
    assert!(!s.release_task(&first.id, "w1/c1", 3150).await.unwrap(), "once");
    let again = s.claim_task("w1/c2", 3200, 4000).await.unwrap().unwrap();
    assert_eq!(again.id, first.id);
    assert_eq!(again.attempts, 1, "a release gives its attempt back: draining is not failing");
    assert_eq!(s.claim_task("w1/c3", 3200, 4000).await.unwrap().unwrap().id, second.id);
    assert!(s.claim_task("w1/c4", 3200, 4000).await.unwrap().is_none());
    // A completed task is not released by a late drain, and its end stands.
    let ended = s.complete_task(&first.id, "w1/c2", &json!({}), &[], 1, 3300, no_webhook).await.unwrap();
    assert!(ended.is_some());
    assert!(!s.release_task(&first.id, "w1/c2", 3400).await.unwrap());
    assert_eq!(s.get_task("key_a", &first.id).await.unwrap().unwrap().status, TaskStatus::Completed);
}

async fn two_claims_of_one_task_by_the_same_process_are_fenced_apart(s: Arc<dyn Store>) {
    let t = created(s.create_task(task("key_a", None, 1000)).await.unwrap());
    // One process, two claims: its heartbeats failed past the lease and it claimed the task again.
    s.claim_task("wrk_1/clm_a", 2000, 3000).await.unwrap().unwrap();
    let second = s.claim_task("wrk_1/clm_b", 3500, 6000).await.unwrap().unwrap();
    assert_eq!(second.id, t.id);
    assert_eq!(s.renew_lease(&t.id, "wrk_1/clm_a", 7000).await.unwrap(), Lease::Lost);
    assert!(s.complete_task(&t.id, "wrk_1/clm_a", &json!({}), &[], 1, 4000, no_webhook).await.unwrap().is_none());
    assert!(!s.release_task(&t.id, "wrk_1/clm_a", 4000).await.unwrap());
    assert!(s.complete_task(&t.id, "wrk_1/clm_b", &json!({}), &[], 1, 4000, no_webhook).await.unwrap().is_some());
}

async fn keys_are_found_by_hash_and_revocation_sticks(s: Arc<dyn Store>) {
    let (rec, secret) = imagegate::keys::issue(s.as_ref(), "acme").await.unwrap();
    let hash = imagegate::api::auth::hash_key(&secret);
    assert_eq!(s.key_by_hash(&hash).await.unwrap().unwrap().id, rec.id);
    assert!(s.key_by_hash(&imagegate::api::auth::hash_key("igk_other")).await.unwrap().is_none());
    assert!(s.revoke_key(&rec.id, 5).await.unwrap());
    assert!(s.revoke_key(&rec.id, 6).await.unwrap(), "idempotent");
    assert_eq!(s.key_by_hash(&hash).await.unwrap().unwrap().revoked_at, Some(5));
    assert!(!s.revoke_key("key_nope", 5).await.unwrap());
}

async fn claims_are_fair_across_owners(s: Arc<dyn Store>) {
    for i in 0..20 {
        created(s.create_task(task("key_a", None, 1000 + i)).await.unwrap());
    }
    let b = created(s.create_task(task("key_b", None, 5000)).await.unwrap());
    let first = s.claim_task("w", 6000, 60_000).await.unwrap().unwrap();
    assert_eq!(first.owner, "key_a");
    let second = s.claim_task("w", 6001, 60_000).await.unwrap().unwrap();
    assert_eq!(second.id, b.id, "the other owner's single task goes next, not after A's burst");
}

async fn cancelling_a_queued_task_ends_it_and_owes_its_webhook_in_the_same_step(s: Arc<dyn Store>) {
    let mut t = task("key_a", None, 1000);
    t.webhook = Some(WebhookTarget { url: "https://example.com/hook".into(), events: vec!["cancelled".into()] });
    let t = created(s.create_task(t).await.unwrap());
    match s.request_cancel("key_b", &t.id, 2000, every_change).await.unwrap() {
        CancelOutcome::NotFound => {}
        other => panic!("another owner cannot cancel: {other:?}"),
    }
    match s.request_cancel("key_a", &t.id, 2000, every_change).await.unwrap() {
        CancelOutcome::Cancelled(c) => assert_eq!(c.status, TaskStatus::Cancelled),
        other => panic!("{other:?}"),
    }
    let msgs = s.claim_webhooks("d", 3000, 4000, 10).await.unwrap();
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].event_type, "task.cancelled");
    assert!(s.claim_task("w", 3000, 4000).await.unwrap().is_none(), "a cancelled task is never run");
    match s.request_cancel("key_a", &t.id, 2000, every_change).await.unwrap() {
        CancelOutcome::AlreadyEnded(_) => {}
        other => panic!("{other:?}"),
    }
}

async fn cancelling_a_running_task_asks_its_worker_through_the_lease(s: Arc<dyn Store>) {
    let t = created(s.create_task(task("key_a", None, 1000)).await.unwrap());
    s.claim_task("w", 2000, 9000).await.unwrap().unwrap();
    match s.request_cancel("key_a", &t.id, 2500, no_webhook).await.unwrap() {
        CancelOutcome::Requested(r) => assert!(r.cancel_requested),
        other => panic!("{other:?}"),
    }
    assert_eq!(s.renew_lease(&t.id, "w", 9500).await.unwrap(), Lease::CancelRequested);
    assert!(s.finish_cancelled(&t.id, "w", 3000, no_webhook).await.unwrap().is_some());
    assert_eq!(s.get_task("key_a", &t.id).await.unwrap().unwrap().status, TaskStatus::Cancelled);
}

async fn the_outbox_redelivers_on_schedule_and_logs_every_attempt(s: Arc<dyn Store>) {
    let t = created(s.create_task(task("key_a", None, 1000)).await.unwrap());
    s.claim_task("w", 1000, 9000).await.unwrap();
    let ended = s.complete_task(&t.id, "w", &json!({}), &[], 1, 2000, every_change).await.unwrap();
    assert!(ended.is_some_and(|e| e.webhook_queued), "the end says a webhook was queued");
    let m = s.claim_webhooks("d1", 2000, 62_000, 10).await.unwrap();
    assert_eq!(m.len(), 1);
    assert!(s.claim_webhooks("d2", 2001, 62_000, 10).await.unwrap().is_empty(), "leased to d1");
    let attempt = |at: i64, code: Option<u16>| DeliveryAttempt {
        message_id: m[0].id.clone(),
        task_id: t.id.clone(),
        event_type: m[0].event_type.clone(),
        url: m[0].url.clone(),
        attempted_at_ms: at,
        status_code: code,
        error: code.is_none().then(|| "connection refused".to_string()),
        latency_ms: 3,
    };
    s.record_attempt(&attempt(2000, Some(500)), AttemptOutcome::RetryAt(7000)).await.unwrap();
    assert_eq!(s.next_webhook_due().await.unwrap(), Some(7000));
    assert!(s.claim_webhooks("d1", 6999, 70_000, 10).await.unwrap().is_empty(), "not due yet");
    let again = s.claim_webhooks("d2", 7000, 70_000, 10).await.unwrap();
    assert_eq!((again[0].id.as_str(), again[0].attempts), (m[0].id.as_str(), 1), "same webhook-id");
    s.record_attempt(&attempt(7000, None), AttemptOutcome::RetryAt(8000)).await.unwrap();
    s.claim_webhooks("d2", 8000, 70_000, 10).await.unwrap();
    s.record_attempt(&attempt(8000, Some(200)), AttemptOutcome::Delivered).await.unwrap();
    assert_eq!(s.next_webhook_due().await.unwrap(), None);
    let log = s.list_attempts("key_a", &t.id).await.unwrap().unwrap();
    let codes: Vec<Option<u16>> = log.iter().map(|a| a.status_code).collect();
    assert_eq!(codes, vec![Some(500), None, Some(200)]);
    assert!(s.list_attempts("key_b", &t.id).await.unwrap().is_none());
}

async fn usage_of(s: &dyn Store, owner: &str) -> (i64, f64) {
    let rows = s.usage(Some(owner), "2026-01-01").await.unwrap();
    (rows.iter().map(|r| r.images).sum(), rows.iter().map(|r| r.cost_usd).sum())
}

async fn reservations_are_charged_for_delivered_images_and_refunded_otherwise(s: Arc<dyn Store>) {
    let (key, _) = imagegate::keys::issue(s.as_ref(), "billing").await.unwrap();
    let owner = key.id.as_str();
    let mut three = task(owner, None, 1000);
    three.reservation = Reservation { images: 3, cost_usd: 0.402, day: "2026-11-25".into() };
    let t1 = created(s.create_task(three).await.unwrap());
    let t2 = created(s.create_task(task(owner, None, 1001)).await.unwrap());
    let t3 = created(s.create_task(task(owner, None, 1002)).await.unwrap());
    let k = s.get_key(owner).await.unwrap().unwrap();
    assert!((k.reserved_usd - 0.67).abs() < 1e-9, "{}", k.reserved_usd);
    assert_eq!(usage_of(s.as_ref(), owner).await.0, 5, "reserved images count toward the day");

    // t1 delivers 2 of 3 images: charged 2/3 of its reservation.
    s.claim_task("w", 2000, 9000).await.unwrap();
    let imgs: Vec<ImageRecord> = (0..2)
        .map(|i| ImageRecord {
            id: format!("img_{i}"),
            task_id: t1.id.clone(),
            owner: owner.into(),
            blob_key: format!("img_{i}.jpeg"),
            content_type: "image/jpeg".into(),
            bytes: 1,
            width: 1,
            height: 1,
            etag: "\"e\"".into(),
            created_at_ms: 2000,
            expires_at: 99,
            cost_usd: 0.134,
        })
        .collect();
    assert!(s.complete_task(&t1.id, "w", &json!({}), &imgs, 3, 2500, no_webhook).await.unwrap().is_some());
    assert_eq!(s.get_task(owner, &t1.id).await.unwrap().unwrap().cost_usd, Some(0.268));
    // t2 fails: refunded.
    s.claim_task("w", 3000, 9000).await.unwrap();
    assert!(s.fail_task(&t2.id, "w", &json!({"code": "x"}), 1, 3500, no_webhook).await.unwrap().is_some());
    assert_eq!(s.get_task(owner, &t2.id).await.unwrap().unwrap().cost_usd, Some(0.0));
    // t3 is cancelled while queued: refunded.
    assert!(matches!(s.request_cancel(owner, &t3.id, 4000, no_webhook).await.unwrap(), CancelOutcome::Cancelled(_)));

    let k = s.get_key(owner).await.unwrap().unwrap();
    assert!(k.reserved_usd.abs() < 1e-9, "nothing left reserved: {}", k.reserved_usd);
    assert!((k.spent_usd - 0.268).abs() < 1e-9, "{}", k.spent_usd);
    let (images, cost) = usage_of(s.as_ref(), owner).await;
    assert_eq!(images, 2);
    assert!((cost - 0.268).abs() < 1e-9);
}

async fn limits_are_checked_when_the_task_is_created(s: Arc<dyn Store>) {
    let (key, _) = imagegate::keys::issue(s.as_ref(), "limited").await.unwrap();
    let owner = key.id.as_str();
    let limited = |limits: Limits, at| NewTask { limits, ..task(owner, None, at) };
    let conc = Limits { max_concurrency: Some(2), ..Limits::default() };
    created(s.create_task(limited(conc.clone(), 1)).await.unwrap());
    created(s.create_task(limited(conc.clone(), 2)).await.unwrap());
    assert_eq!(
        s.create_task(limited(conc.clone(), 3)).await.unwrap(),
        Created::OverLimit(LimitHit::Concurrency { limit: 2 })
    );
    let daily = Limits { daily_images: Some(3), ..Limits::default() };
    created(s.create_task(limited(daily.clone(), 4)).await.unwrap());
    assert!(matches!(
        s.create_task(limited(daily, 5)).await.unwrap(),
        Created::OverLimit(LimitHit::DailyImages { limit: 3, used: 3 })
    ));
    let budget = Limits { budget_usd: Some(0.5), ..Limits::default() };
    assert!(matches!(s.create_task(limited(budget, 6)).await.unwrap(), Created::OverLimit(LimitHit::Budget { .. })));
    let roomy = Limits { budget_usd: Some(1.0), ..Limits::default() };
    created(s.create_task(limited(roomy, 7)).await.unwrap());
}

async fn concurrent_submits_committed_together_each_see_the_ones_before(s: Arc<dyn Store>) {
    let (key, _) = imagegate::keys::issue(s.as_ref(), "burst").await.unwrap();
    let owner = key.id.clone();
    // 40 submits under a concurrency limit of 5, half of them sharing one Idempotency-Key:
    // the limit and the key hold across submits that share a commit. The key's first task is
    // written first (else the limit may fill before any submit with the key gets in, and
    // every one of them is refused by the limit instead).
    let limits = Limits { max_concurrency: Some(5), ..Limits::default() };
    let first = s.create_task(NewTask { limits, ..task(&owner, Some(("same-key", "same-hash")), 1000) }).await.unwrap();
    assert!(matches!(first, Created::New { .. }));
    let handles: Vec<_> = (1..40)
        .map(|i| {
            let s = s.clone();
            let owner = owner.clone();
            tokio::spawn(async move {
                let idem = if i % 2 == 0 { Some(("same-key", "same-hash")) } else { None };
                let limits = Limits { max_concurrency: Some(5), ..Limits::default() };
                s.create_task(NewTask { limits, ..task(&owner, idem, 1000 + i) }).await.unwrap()
            })
        })
        .collect();
    let mut new = 1;
    let mut existing = std::collections::HashSet::new();
    let mut repeats = 0;
    let mut over = 0;
    for h in handles {
        match h.await.unwrap() {
            Created::New { .. } => new += 1,
            Created::Existing(t) => {
                existing.insert(t.id);
                repeats += 1;
            }
            Created::OverLimit(LimitHit::Concurrency { limit: 5 }) => over += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(new, 5, "exactly the limit was created");
    assert!(existing.len() <= 1, "one task behind the shared key: {existing:?}");
    assert!(repeats > 0 && over > 0, "both the key and the limit turned submits away");
    assert_eq!(s.count_unfinished().await.unwrap(), 5);
    let k = s.get_key(&owner).await.unwrap().unwrap();
    assert!((k.reserved_usd - 5.0 * 0.134).abs() < 1e-9, "reserved for exactly the created: {}", k.reserved_usd);
}

async fn concurrent_completions_committed_together_keep_their_own_fencing(s: Arc<dyn Store>) {
    let mut ids = Vec::new();
    for i in 0..20 {
        let claimed = Some((format!("w{i}"), 10_000));
        let Created::New { task: t, .. } =
            s.create_task(NewTask { claimed, ..task("key_a", None, 1000 + i) }).await.unwrap()
        else {
            panic!("not created")
        };
        ids.push(t.id);
    }
    // Every other completion comes from a worker that does not hold the task.
    let handles: Vec<_> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let (s, id) = (s.clone(), id.clone());
            let worker = if i % 2 == 0 { format!("w{i}") } else { "intruder".to_string() };
            tokio::spawn(async move { s.complete_task(&id, &worker, &json!({"i": i}), &[], 1, 5000, no_webhook).await })
        })
        .collect();
    for (i, h) in handles.into_iter().enumerate() {
        assert_eq!(h.await.unwrap().unwrap().is_some(), i % 2 == 0, "completion {i}");
    }
    for (i, id) in ids.iter().enumerate() {
        let t = s.get_task("key_a", id).await.unwrap().unwrap();
        let want = if i % 2 == 0 { TaskStatus::Completed } else { TaskStatus::Running };
        assert_eq!(t.status, want, "task {i}");
    }
}

async fn queued_tasks_learn_their_place_in_the_queue_when_written(s: Arc<dyn Store>) {
    let new = |c: Created| match c {
        Created::New { task, queue_position } => (task, queue_position),
        other => panic!("expected a new task, got {other:?}"),
    };
    // One at a time: each is told how many are ahead, as a read says.
    for i in 0..3 {
        let (t, told) = new(s.create_task(task("key_a", None, 1000 + i)).await.unwrap());
        assert_eq!(told, Some(i));
        assert_eq!(s.queue_position(&t).await.unwrap(), i);
    }
    // Many at once (group-committed together): never told a place behind their real one.
    let handles: Vec<_> = (0..20)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move { s.create_task(task("key_a", None, 2000 + i)).await.unwrap() })
        })
        .collect();
    let mut burst = Vec::new();
    for h in handles {
        burst.push(new(h.await.unwrap()));
    }
    for (t, told) in &burst {
        let now = s.queue_position(t).await.unwrap();
        let told = told.expect("queued");
        assert!((3..=now).contains(&told), "told {told}, now {now}: only tasks written later can be ahead of it");
    }
    let mut final_places: Vec<i64> = Vec::new();
    for (t, _) in &burst {
        final_places.push(s.queue_position(t).await.unwrap());
    }
    final_places.sort();
    assert_eq!(final_places, (3..23).collect::<Vec<_>>());
    // A claim moves the front: the next submit counts afresh.
    s.claim_task("w", 5000, 9000).await.unwrap().unwrap();
    assert_eq!(new(s.create_task(task("key_a", None, 3000)).await.unwrap()).1, Some(22));
    // Written already claimed (a sync task starting at once): not in the queue.
    let claimed = NewTask { claimed: Some(("w".into(), 9000)), ..task("key_a", None, 3001) };
    assert_eq!(new(s.create_task(claimed).await.unwrap()).1, None);
}

async fn a_rate_lets_a_burst_through_then_one_per_interval(s: Arc<dyn Store>) {
    let t0 = 1_000_000;
    for i in 0..10 {
        assert_eq!(s.take_rate("key:a", 10, t0).await.unwrap(), None, "request {i} of the burst");
    }
    let wait = s.take_rate("key:a", 10, t0).await.unwrap().expect("the 11th is over the rate");
    assert_eq!(wait, std::time::Duration::from_secs(6));
    assert!(s.take_rate("key:a", 10, t0 + 5_000).await.unwrap().is_some(), "a refusal takes nothing");
    assert_eq!(s.take_rate("key:a", 10, t0 + 6_000).await.unwrap(), None, "one more after 6 s");
    assert_eq!(s.take_rate("key:b", 10, t0).await.unwrap(), None, "buckets are apart");
}

async fn channel_slots_are_held_until_released_or_their_lease_runs_out(s: Arc<dyn Store>) {
    let (now, until) = (1_000, 31_000);
    assert_eq!(s.take_slot("gemini-1", 2, "a", until, now).await.unwrap(), Some(0));
    assert_eq!(s.take_slot("gemini-1", 2, "b", until, now).await.unwrap(), Some(1));
    assert_eq!(s.take_slot("gemini-1", 2, "c", until, now).await.unwrap(), None, "both held");
    assert_eq!(s.take_slot("gemini-2", 2, "c", until, now).await.unwrap(), Some(0), "scopes are apart");
    s.release_slot("gemini-1", 0, "someone-else").await.unwrap();
    assert_eq!(s.take_slot("gemini-1", 2, "c", until, now).await.unwrap(), None, "only its holder frees a slot");
    s.release_slot("gemini-1", 0, "a").await.unwrap();
    assert_eq!(s.take_slot("gemini-1", 2, "c", until, now).await.unwrap(), Some(0), "a released slot is free");
    assert!(s.renew_slot("gemini-1", 1, "b", 61_000).await.unwrap());
    assert!(!s.renew_slot("gemini-1", 1, "c", 61_000).await.unwrap(), "a slot is renewed by its holder only");
    // "c" died holding slot 0: its lease runs out at 31 s; "b" renewed slot 1 to 61 s.
    assert_eq!(
        s.take_slot("gemini-1", 2, "d", 62_000, 40_000).await.unwrap(),
        Some(0),
        "an expired slot is taken over"
    );
    assert!(!s.renew_slot("gemini-1", 0, "c", 70_000).await.unwrap(), "its old holder lost it");
    assert_eq!(s.take_slot("gemini-1", 2, "e", 62_000, 40_000).await.unwrap(), None);
}

fn image_of(t: &TaskRecord, expires_at: i64) -> ImageRecord {
    let id = imagegate::domain::ids::image_id();
    ImageRecord {
        blob_key: format!("{id}.jpeg"),
        id,
        task_id: t.id.clone(),
        owner: t.owner.clone(),
        content_type: "image/jpeg".into(),
        bytes: 10,
        width: 1024,
        height: 1024,
        etag: "\"e\"".into(),
        created_at_ms: 2000,
        expires_at,
        cost_usd: 0.134,
    }
}

async fn many_workers_claiming_at_once_take_each_task_once(s: Arc<dyn Store>) {
    for i in 0..40 {
        created(s.create_task(task(&format!("key_{}", i % 4), None, 1000 + i)).await.unwrap());
    }
    let workers: Vec<_> = (0..8)
        .map(|w| {
            let s = s.clone();
            tokio::spawn(async move {
                let mut mine = Vec::new();
                for n in 0.. {
                    match s.claim_task(&format!("w{w}/c{n}"), 5000, 60_000).await.unwrap() {
                        Some(t) => mine.push(t.id),
                        None => break,
                    }
                }
                mine
            })
        })
        .collect();
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.unwrap());
    }
    let distinct: std::collections::HashSet<_> = all.iter().collect();
    assert_eq!((all.len(), distinct.len()), (40, 40), "every task claimed, none twice");
}

async fn a_cancel_racing_a_completion_ends_the_task_once(s: Arc<dyn Store>) {
    for round in 0..10 {
        let t = created(s.create_task(task("key_a", None, 1000 + round)).await.unwrap());
        let claim = format!("w/c{round}");
        let c = s.claim_task(&claim, 2000, 60_000).await.unwrap().unwrap();
        assert_eq!(c.id, t.id);
        let img = image_of(&t, 99);
        let result = json!({"data": []});
        let (done, cancel) = tokio::join!(
            s.complete_task(&t.id, &claim, &result, std::slice::from_ref(&img), 1, 3000, every_change),
            s.request_cancel("key_a", &t.id, 3000, every_change),
        );
        let end = s.get_task("key_a", &t.id).await.unwrap().unwrap();
        assert!(done.unwrap().is_some(), "the worker holds the lease: its end is written");
        assert_eq!(end.status, TaskStatus::Completed);
        match cancel.unwrap() {
            CancelOutcome::Requested(_) | CancelOutcome::AlreadyEnded(_) => {}
            other => panic!("a running task is never cancelled in place: {other:?}"),
        }
        assert!(s.get_image(&img.id).await.unwrap().is_some());
    }
    let hooks = s.claim_webhooks("d", 99_999, 100_000, 100).await.unwrap();
    assert_eq!(hooks.len(), 10, "one webhook per task end, none for the cancel requests");
    assert!(hooks.iter().all(|h| h.event_type == "task.completed"));
}

async fn expired_images_are_swept_with_their_variants_and_stop_being_live(s: Arc<dyn Store>) {
    let t = created(s.create_task(task("key_a", None, 1000)).await.unwrap());
    s.claim_task("w/c", 2000, 60_000).await.unwrap().unwrap();
    let (old, young) = (image_of(&t, 100), image_of(&t, 10_000));
    s.complete_task(&t.id, "w/c", &json!({"data": []}), &[old.clone(), young.clone()], 1, 3000, no_webhook)
        .await
        .unwrap()
        .unwrap();
    s.add_variant(&old.id, "var/a.webp", 5, 4000).await.unwrap();
    s.add_variant(&old.id, "var/a.webp", 5, 4001).await.unwrap();
    s.add_variant(&old.id, "var/b.jpeg", 6, 4002).await.unwrap();
    let mut v = s.variants(&old.id).await.unwrap();
    v.sort();
    assert_eq!(v, vec![("var/a.webp".to_string(), 5), ("var/b.jpeg".to_string(), 6)], "recorded once each");
    let due = s.expired_images(5_000, 10).await.unwrap();
    assert_eq!(due.len(), 1, "only the image past its expiry");
    let (img, mut variants) = due.into_iter().next().unwrap();
    variants.sort();
    assert_eq!(
        (img.id.as_str(), variants),
        (old.id.as_str(), vec!["var/a.webp".to_string(), "var/b.jpeg".to_string()])
    );
    s.mark_swept(&old.id, 6000).await.unwrap();
    assert!(s.expired_images(5_000, 10).await.unwrap().is_empty(), "swept once");
    assert!(s.variants(&old.id).await.unwrap().is_empty());
    let live = s.live_images(&[old.id.clone(), young.id.clone(), "img_unknown".into()]).await.unwrap();
    assert_eq!(live, std::collections::HashSet::from([young.id.clone()]), "the sweep forgets the old, keeps the young");
    assert!(s.get_image(&old.id).await.unwrap().is_some(), "the row stays for the task's record");
}

async fn exports_are_owed_with_the_images_and_claimed_by_one_exporter_at_a_time(s: Arc<dyn Store>) {
    let key = s
        .create_key(imagegate::store::NewKey {
            id: "key_exp".into(),
            name: "exporter".into(),
            key_hash: "h_exp".into(),
            prefix: "igk_x".into(),
            created_at: 1,
            webhook_secret: "whsec_x".into(),
        })
        .await
        .unwrap();
    let dest = imagegate::domain::export::ExportDestination {
        bucket: "customer".into(),
        prefix: "ig".into(),
        endpoint: None,
        region: "us-east-1".into(),
        virtual_host: false,
        access_key_id: "AK".into(),
        secret_access_key: "sealed".into(),
    };
    assert_eq!(s.set_key_export(&key.id, Some(&dest)).await.unwrap().unwrap().export, Some(dest));
    let t = created(s.create_task(task(&key.id, None, 1000)).await.unwrap());
    s.claim_task("w/c", 2000, 60_000).await.unwrap().unwrap();
    let images = [image_of(&t, 99), image_of(&t, 99)];
    let ended =
        s.complete_task(&t.id, "w/c", &json!({"data": []}), &images, 1, 3000, no_webhook).await.unwrap().unwrap();
    assert!(ended.exports_owed, "owed in the completing transaction");
    let (a, b) = tokio::join!(s.claim_exports("e1", 3000, 9000, 10), s.claim_exports("e2", 3000, 9000, 10));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.len() + b.len(), 2, "each copy claimed by one exporter");
    assert!(s.claim_exports("e3", 5000, 9000, 10).await.unwrap().is_empty(), "leased");
    assert_eq!(s.next_export_due().await.unwrap(), Some(9000), "due again when the lease ends");
    let job = a.first().or(b.first()).unwrap().clone();
    s.record_export(
        &job.image_id,
        &imagegate::store::ExportOutcome::Exported {
            bucket: "customer".into(),
            object_key: format!("ig/{}", job.object_name),
        },
        4000,
    )
    .await
    .unwrap();
    let records = s.task_exports(&key.id, std::slice::from_ref(&t.id)).await.unwrap();
    assert_eq!(records.len(), 2);
    assert_eq!(records.iter().filter(|r| r.status == "exported").count(), 1);
    assert!(s.task_exports("key_other", std::slice::from_ref(&t.id)).await.unwrap().is_empty(), "scoped to the owner");
    let again = s.claim_exports("e3", 9001, 20_000, 10).await.unwrap();
    assert_eq!(again.len(), 1, "the copy whose exporter went quiet comes back; the exported one does not");
}

fn input_of(task_id: &str, owner: &str, position: u32, sha: &str, expires_at: i64) -> imagegate::store::InputRecord {
    imagegate::store::InputRecord {
        id: format!("inp_{}", imagegate::domain::ids::task_id()),
        task_id: task_id.into(),
        owner: owner.into(),
        position,
        blob_key: format!("inputs/{owner}/{sha}.png"),
        content_type: "image/png".into(),
        sha256: sha.into(),
        bytes: 1234,
        width: 640,
        height: 480,
        created_at_ms: 1000,
        expires_at,
    }
}

async fn inputs_are_written_with_their_task_and_swept_only_when_no_live_input_shares_their_blob(s: Arc<dyn Store>) {
    // Two tasks of one key given the same photo (one blob), the first also another one.
    let first = task("key_a", None, 1000);
    let a = vec![input_of(&first.id, "key_a", 0, "aaa", 100), input_of(&first.id, "key_a", 1, "bbb", 100)];
    let first_id = created(s.create_task(NewTask { inputs: a.clone(), ..first }).await.unwrap()).id;
    let second = task("key_a", Some(("k", "h")), 2000);
    let b = vec![input_of(&second.id, "key_a", 0, "aaa", 10_000)];
    let second_id = created(s.create_task(NewTask { inputs: b.clone(), ..second }).await.unwrap()).id;
    assert_eq!(s.task_inputs("key_a", &first_id).await.unwrap(), a, "in the order given");
    assert_eq!(s.task_inputs("key_a", &second_id).await.unwrap(), b);
    assert!(s.task_inputs("key_b", &first_id).await.unwrap().is_empty(), "scoped to the owner");
    // At 500 s the first task's inputs are past their expiry; "aaa" is still wanted by the second.
    let mut due = s.expired_inputs(500, 10).await.unwrap();
    due.sort_by_key(|(i, _)| i.position);
    let seen: Vec<(&str, bool)> = due.iter().map(|(i, shared)| (i.sha256.as_str(), *shared)).collect();
    assert_eq!(seen, vec![("aaa", true), ("bbb", false)], "the shared blob stays, the other goes");
    for (i, _) in &due {
        s.mark_input_swept(&i.id, 600).await.unwrap();
    }
    assert!(s.expired_inputs(500, 10).await.unwrap().is_empty(), "swept once");
    let last = s.expired_inputs(20_000, 10).await.unwrap();
    assert_eq!(last.len(), 1);
    assert_eq!((last[0].0.id.as_str(), last[0].1), (b[0].id.as_str(), false), "its last user gone, the blob goes");
    assert_eq!(s.task_inputs("key_a", &first_id).await.unwrap().len(), 2, "rows stay for the task's record");
    let keys = vec![a[0].blob_key.clone(), a[1].blob_key.clone(), "inp_key_x_unknown.png".to_string()];
    let live = s.live_input_blobs(&keys).await.unwrap();
    assert_eq!(live, std::collections::HashSet::from([a[0].blob_key.clone()]), "wanted by the second task's input");
}

async fn files_are_kept_per_owner_listed_newest_first_and_deleted_once(s: Arc<dyn Store>) {
    let file = |id: &str, owner: &str, purpose: &str| imagegate::store::FileRecord {
        id: id.into(),
        owner: owner.into(),
        purpose: purpose.into(),
        filename: format!("{id}.jsonl"),
        bytes: 42,
        blob_key: format!("file_{id}.jsonl"),
        created_at: 1_700_000_000,
        expires_at: None,
    };
    for (id, owner, purpose) in
        [("file_1", "a", "batch"), ("file_2", "a", "batch_output"), ("file_3", "a", "batch"), ("file_4", "b", "batch")]
    {
        s.create_file(&file(id, owner, purpose)).await.unwrap();
    }
    assert_eq!(s.get_file("a", "file_1").await.unwrap(), Some(file("file_1", "a", "batch")));
    assert_eq!(s.get_file("b", "file_1").await.unwrap(), None, "another owner's file is not found");
    let ids = |v: Vec<imagegate::store::FileRecord>| v.into_iter().map(|f| f.id).collect::<Vec<_>>();
    assert_eq!(ids(s.list_files("a", None, None, 10).await.unwrap()), ["file_3", "file_2", "file_1"]);
    assert_eq!(ids(s.list_files("a", Some("batch"), None, 10).await.unwrap()), ["file_3", "file_1"]);
    assert_eq!(ids(s.list_files("a", None, Some("file_3"), 1).await.unwrap()), ["file_2"]);
    assert_eq!(s.delete_file("b", "file_1").await.unwrap(), None, "not another owner's");
    assert_eq!(s.delete_file("a", "file_1").await.unwrap().map(|f| f.blob_key), Some("file_file_1.jsonl".into()));
    assert_eq!(s.delete_file("a", "file_1").await.unwrap(), None, "deleted once");
    assert_eq!(ids(s.list_files("a", None, None, 10).await.unwrap()), ["file_3", "file_2"]);
    // Files with an expiry are handed to the sweep once it has passed.
    s.create_file(&imagegate::store::FileRecord {
        expires_at: Some(1_700_000_100),
        ..file("file_5", "b", "batch_output")
    })
    .await
    .unwrap();
    assert!(s.expired_files(1_700_000_099, 10).await.unwrap().is_empty());
    assert_eq!(ids(s.expired_files(1_700_000_100, 10).await.unwrap()), ["file_5"]);
}

fn batch_record(id: &str, owner: &str) -> imagegate::store::BatchRecord {
    imagegate::store::BatchRecord {
        id: id.into(),
        owner: owner.into(),
        endpoint: "/v1/images/generations".into(),
        input_file_id: "file-x".into(),
        completion_window: "24h".into(),
        status: imagegate::domain::batch::BatchStatus::Validating,
        metadata: Some(json!({"project": "p"})),
        errors: None,
        webhook_url: Some("https://example.com/hook".into()),
        total: 0,
        completed: 0,
        failed: 0,
        cost_usd: 0.0,
        output_file_id: None,
        error_file_id: None,
        created_at: 1_700_000_000,
        in_progress_at: None,
        finalizing_at: None,
        completed_at: None,
        failed_at: None,
        expired_at: None,
        cancelling_at: None,
        cancelled_at: None,
        expires_at: 1_700_086_400,
    }
}

fn batch_line(owner: &str, batch_id: &str, custom_id: &str, at: i64) -> NewTask {
    NewTask {
        mode: TaskMode::Batch,
        batch: Some(imagegate::store::BatchLink { batch_id: batch_id.into(), custom_id: custom_id.into() }),
        lane: imagegate::store::LANE_BATCH,
        ..task(owner, None, at)
    }
}

async fn batches_are_driven_by_one_lease_holder_and_a_cancel_wins_over_its_step(s: Arc<dyn Store>) {
    use imagegate::domain::batch::BatchStatus;
    let b = batch_record("batch_1", "a");
    s.create_batch(&b).await.unwrap();
    assert_eq!(s.get_batch("a", "batch_1").await.unwrap(), Some(b.clone()));
    assert_eq!(s.get_batch("b", "batch_1").await.unwrap(), None, "another owner's batch is not found");
    s.create_batch(&batch_record("batch_2", "a")).await.unwrap();
    let ids = |v: Vec<imagegate::store::BatchRecord>| v.into_iter().map(|b| b.id).collect::<Vec<_>>();
    assert_eq!(ids(s.list_batches("a", None, 10).await.unwrap()), ["batch_2", "batch_1"]);
    assert_eq!(ids(s.list_batches("a", Some("batch_2"), 10).await.unwrap()), ["batch_1"]);

    // One driver at a time; a lease that runs out lets another take it.
    let first = s.claim_batch("d1", 1000, 61_000).await.unwrap().expect("due");
    let second = s.claim_batch("d2", 1000, 61_000).await.unwrap().expect("the other batch");
    assert_ne!(first.id, second.id);
    assert!(s.claim_batch("d3", 2000, 62_000).await.unwrap().is_none(), "both are held");
    assert!(s.renew_batch(&first.id, "d1", 90_000).await.unwrap());
    assert!(!s.renew_batch(&first.id, "d3", 90_000).await.unwrap(), "not d3's");
    let retaken = s.claim_batch("d3", 70_000, 130_000).await.unwrap().expect("d2's lease ran out");
    assert_eq!(retaken.id, second.id);

    // Lines: a task each (or a refusal), recorded once.
    let t1 = created(s.create_task(batch_line("a", &first.id, "x", 1000)).await.unwrap());
    let t2 = created(s.create_task(batch_line("a", &first.id, "y", 1001)).await.unwrap());
    assert_eq!(
        (t1.mode, t1.batch_id.as_deref(), t1.custom_id.as_deref()),
        (TaskMode::Batch, Some(first.id.as_str()), Some("x"))
    );
    let refusal = json!({"status": 400, "code": "invalid_value", "message": "bad size", "param": "size"});
    s.add_batch_line(&first.id, 1, "x", Some(&t1.id), None).await.unwrap();
    s.add_batch_line(&first.id, 2, "bad", None, Some(&refusal)).await.unwrap();
    s.add_batch_line(&first.id, 3, "y", Some(&t2.id), None).await.unwrap();
    s.add_batch_line(&first.id, 3, "y", None, Some(&refusal)).await.unwrap();
    let p = s.batch_progress(&first.id).await.unwrap();
    assert_eq!((p.lines, p.completed, p.failed, p.open), (3, 0, 1, 2));
    let lines = s.batch_lines(&first.id, 0, 10).await.unwrap();
    assert_eq!(lines.iter().map(|l| l.line).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(lines[0].task.as_ref().map(|t| t.id.as_str()), Some(t1.id.as_str()));
    assert_eq!((lines[1].task.is_none(), lines[1].error.as_ref()), (true, Some(&refusal)));
    assert_eq!(lines[2].task.as_ref().map(|t| t.id.as_str()), Some(t2.id.as_str()), "recorded once");
    assert_eq!(s.batch_lines(&first.id, 2, 10).await.unwrap().len(), 1);
    assert_eq!(s.open_batch_tasks(&first.id, 10).await.unwrap().len(), 2);

    // A cancel asked while the driver holds the batch wins over the step it saves.
    let cancelled = s.cancel_batch("a", &first.id, 1_700_000_100).await.unwrap().unwrap();
    assert_eq!((cancelled.status, cancelled.cancelling_at), (BatchStatus::Cancelling, Some(1_700_000_100)));
    let mut step = first.clone();
    step.status = BatchStatus::InProgress;
    step.in_progress_at = Some(1_700_000_050);
    step.total = 3;
    assert!(s.save_batch(&step, "d1", 999_999, None, 5000).await.unwrap());
    let now = s.get_batch("a", &first.id).await.unwrap().unwrap();
    assert_eq!((now.status, now.in_progress_at, now.total), (BatchStatus::Cancelling, Some(1_700_000_050), 3));
    assert!(!s.save_batch(&step, "d1", 0, None, 5000).await.unwrap(), "the lease was let go with the save");
    let again = s.claim_batch("d1", 6000, 66_000).await.unwrap().expect("a cancelling batch is due at once");
    assert_eq!(again.id, first.id);
    let mut end = again.clone();
    end.status = BatchStatus::Cancelled;
    end.cancelled_at = Some(1_700_000_200);
    let hook = NewWebhook {
        id: "msg_batch".into(),
        event_type: "batch.cancelled".into(),
        url: "https://example.com/hook".into(),
        payload: "{}".into(),
    };
    assert!(s.save_batch(&end, "d1", 0, Some(&hook), 7000).await.unwrap());
    assert_eq!(s.get_batch("a", &first.id).await.unwrap().unwrap().status, BatchStatus::Cancelled);
    let msgs = s.claim_webhooks("w", 8000, 9000, 10).await.unwrap();
    assert_eq!(
        msgs.iter().map(|m| (m.task_id.as_str(), m.event_type.as_str())).collect::<Vec<_>>(),
        [(first.id.as_str(), "batch.cancelled")]
    );
    assert!(
        s.cancel_batch("a", &first.id, 1_700_000_300).await.unwrap().unwrap().status == BatchStatus::Cancelled,
        "an ended batch stays ended"
    );
    assert!(s.claim_batch("d1", 100_000, 160_000).await.unwrap().is_none(), "nothing left to drive");
}

async fn batch_lines_wait_until_no_realtime_task_is_queued(s: Arc<dyn Store>) {
    let line = created(s.create_task(batch_line("a", "batch_1", "x", 1000)).await.unwrap());
    assert!(
        s.claim_task_in("w0", 1500, 60_000, false).await.unwrap().is_none(),
        "a pool full of batch lines takes no more"
    );
    let realtime = created(s.create_task(task("b", None, 2000)).await.unwrap());
    let first = s.claim_task("w1", 3000, 60_000).await.unwrap().unwrap();
    assert_eq!(first.id, realtime.id, "the realtime task goes first though it came later");
    let second = s.claim_task("w2", 3000, 60_000).await.unwrap().unwrap();
    assert_eq!(second.id, line.id);
    // Batch lines do not count against the key's concurrency.
    let limited =
        NewTask { limits: Limits { max_concurrency: Some(1), ..Default::default() }, ..task("a", None, 4000) };
    created(s.create_task(limited).await.unwrap());
}

async fn upstream_jobs_take_their_lines_atomically_and_flex_tasks_fall_back_by_deadline(s: Arc<dyn Store>) {
    use imagegate::domain::batch::JobStep;
    use imagegate::store::{LANE_UPSTREAM, UpstreamJob};
    let held = |owner: &str, batch: Option<&str>, at: i64, deadline: Option<i64>| NewTask {
        mode: if batch.is_some() { TaskMode::Batch } else { TaskMode::Async },
        batch: batch.map(|b| imagegate::store::BatchLink { batch_id: b.into(), custom_id: format!("c{at}") }),
        lane: LANE_UPSTREAM,
        deadline_at: deadline,
        ..task(owner, None, at)
    };
    for at in 0..3 {
        created(s.create_task(held("a", Some("batch_1"), 1000 + at, None)).await.unwrap());
    }
    let flex_soon = created(s.create_task(held("b", None, 2000, Some(100))).await.unwrap());
    let flex_late = created(s.create_task(held("c", None, 2001, Some(10_000))).await.unwrap());
    assert!(s.claim_task("w", 3000, 60_000).await.unwrap().is_none(), "workers never take lane 2");
    assert_eq!(s.waiting_models("batch_1").await.unwrap(), ["nano-banana-pro"]);
    assert_eq!(s.flex_waiting().await.unwrap(), [("nano-banana-pro".to_string(), 2, 2000)]);

    let job = |id: &str, batch: Option<&str>| UpstreamJob {
        id: id.into(),
        batch_id: batch.map(str::to_string),
        owner: "a".into(),
        channel: "gemini-1".into(),
        model: "gemini-3-pro-image-preview".into(),
        step: JobStep::Preparing,
        input_file: None,
        upstream_name: None,
        error: None,
        lines: 0,
        created_at_ms: 4000,
    };
    let taken = s.create_job(&job("ujob_1", Some("batch_1")), "nano-banana-pro", 2, 999_999).await.unwrap();
    assert_eq!(taken.len(), 2, "at most the limit");
    assert!(taken.iter().all(|t| t.status == TaskStatus::Running && t.batch_id.as_deref() == Some("batch_1")));
    let rest = s.create_job(&job("ujob_2", Some("batch_1")), "nano-banana-pro", 10, 999_999).await.unwrap();
    assert_eq!(rest.len(), 1);
    assert!(s.create_job(&job("ujob_3", Some("batch_1")), "nano-banana-pro", 10, 999_999).await.unwrap().is_empty());
    let flex = s.create_job(&job("ujob_4", None), "nano-banana-pro", 10, 999_999).await.unwrap();
    assert_eq!(flex.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(), [flex_soon.id.as_str(), flex_late.id.as_str()]);
    assert_eq!(s.job_tasks("ujob_1").await.unwrap().len(), 2);

    // One driver per job; its save moves it on (another channel included).
    let claimed = s.claim_job("d1", 5000, 65_000).await.unwrap().expect("due");
    assert!(s.renew_job(&claimed.id, "d1", 70_000).await.unwrap());
    assert!(!s.renew_job(&claimed.id, "d2", 70_000).await.unwrap());
    let mut moved = claimed.clone();
    moved.step = JobStep::Creating;
    moved.channel = "gemini-2".into();
    moved.input_file = Some("files/abc".into());
    assert!(s.save_job(&moved, "d1", 10_000_000).await.unwrap());
    assert!(!s.save_job(&moved, "d1", 0).await.unwrap(), "the lease went with the save");
    let mut seen = vec![];
    while let Some(j) = s.claim_job("d2", 6000, 66_000).await.unwrap() {
        seen.push(j.id.clone());
        assert!(s.save_job(&UpstreamJob { step: JobStep::Done, ..j }, "d2", 0).await.unwrap());
    }
    assert_eq!(seen.len(), 2, "the other jobs; the saved one is not due yet: {seen:?}");
    assert!(s.claim_job("d3", 10_000_001, 10_060_000).await.unwrap().is_some_and(|j| j.id == claimed.id
        && j.channel == "gemini-2"
        && j.step == JobStep::Creating
        && j.input_file.as_deref() == Some("files/abc")));

    // A flex task near its deadline leaves its job for the realtime queue; the other waits.
    let back = s.flex_fallback(50, 60, 10).await.unwrap();
    assert_eq!(back.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(), [flex_soon.id.as_str()]);
    assert_eq!(back[0].status, TaskStatus::Queued);
    assert_eq!(s.job_tasks("ujob_4").await.unwrap().len(), 1, "taken from its job");
    let claimed = s.claim_task("w", 7000, 60_000).await.unwrap().expect("now a worker's");
    assert_eq!(claimed.id, flex_soon.id);
    // A line given back waits for a job again, and is taken by the next.
    s.release_job_tasks("ujob_1", &[taken[1].id.clone()]).await.unwrap();
    assert_eq!(s.job_tasks("ujob_1").await.unwrap().len(), 1);
    assert_eq!(s.waiting_models("batch_1").await.unwrap(), ["nano-banana-pro"]);
    let again = s.create_job(&job("ujob_5", Some("batch_1")), "nano-banana-pro", 10, 999_999).await.unwrap();
    assert_eq!(again.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(), [taken[1].id.as_str()]);
}
