//! Cross-replica wake-ups over PostgreSQL's `LISTEN/NOTIFY`.
//!
//! After a change commits, the store announces it (`announce`): a background sender gathers
//! what is announced meanwhile into one `pg_notify` (one round trip for many changes, never on
//! the request's path). Every replica keeps one connection outside the pool listening on the
//! channel and turns what the others announced into `StoreEvent`s (its own are skipped: it
//! woke its own waiters already). A wake-up is best effort: a replica that misses one (the
//! sender failed, the listener was reconnecting) still sees the change at its next periodic
//! re-read, and a reconnected listener announces `Resync` so that everything looks once.

use futures_util::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};
use tokio_postgres::config::SslMode;
use tokio_postgres::{AsyncMessage, Client, Connection};
use tokio_util::sync::{CancellationToken, DropGuard};

use super::db::Db;
use crate::store::{StoreError, StoreEvent};

const CHANNEL: &str = "imagegate";
/// PostgreSQL refuses payloads of 8000 bytes or more.
const MAX_PAYLOAD: usize = 7_000;
/// Announcements waiting to be sent; past this they are dropped (readers re-read anyway).
const OUTGOING: usize = 16_384;
/// Events waiting for slow subscribers in this process.
const INCOMING: usize = 4_096;
/// How often the listening connection is checked while nothing arrives.
const PING: Duration = Duration::from_secs(15);

pub struct Notifier {
    outgoing: mpsc::Sender<String>,
    incoming: broadcast::Sender<StoreEvent>,
    /// Stops the sender and the listener when the store goes.
    _stop: DropGuard,
}

impl Notifier {
    /// Starts the sender and the listener for `db`.
    pub fn start(db: Arc<Db>) -> Notifier {
        let origin = ulid::Ulid::new().to_string();
        let (outgoing, rx) = mpsc::channel(OUTGOING);
        let (incoming, _) = broadcast::channel(INCOMING);
        let stop = CancellationToken::new();
        tokio::spawn(send_loop(db.clone(), origin.clone(), rx, stop.clone()));
        tokio::spawn(listen_loop(db, origin, incoming.clone(), stop.clone()));
        Notifier { outgoing, incoming, _stop: stop.drop_guard() }
    }

    /// Tells the other replicas about committed changes.
    pub fn announce(&self, events: &[StoreEvent]) {
        for e in events {
            // Full: the readers' periodic re-reads cover what is dropped.
            let _ = self.outgoing.try_send(encode(e));
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<StoreEvent> {
        self.incoming.subscribe()
    }
}

fn encode(e: &StoreEvent) -> String {
    match e {
        StoreEvent::Queued => "q".into(),
        StoreEvent::TaskChanged(id) => format!("t:{id}"),
        StoreEvent::CancelRequested(id) => format!("c:{id}"),
        StoreEvent::WebhookDue => "w".into(),
        StoreEvent::ExportDue => "e".into(),
        StoreEvent::Resync => "r".into(),
    }
}

fn decode(token: &str) -> Option<StoreEvent> {
    Some(match token {
        "q" => StoreEvent::Queued,
        "w" => StoreEvent::WebhookDue,
        "e" => StoreEvent::ExportDue,
        "r" => StoreEvent::Resync,
        _ => match token.split_once(':')? {
            ("t", id) if !id.is_empty() => StoreEvent::TaskChanged(id.to_string()),
            ("c", id) if !id.is_empty() => StoreEvent::CancelRequested(id.to_string()),
            _ => return None,
        },
    })
}

/// The events of a payload `ORIGIN TOKEN…`, unless this process sent it.
fn parse(payload: &str, own_origin: &str) -> Vec<StoreEvent> {
    let mut parts = payload.split(' ');
    match parts.next() {
        Some(origin) if origin != own_origin => parts.filter_map(decode).collect(),
        _ => Vec::new(),
    }
}

async fn send_loop(db: Arc<Db>, origin: String, mut rx: mpsc::Receiver<String>, stop: CancellationToken) {
    loop {
        let first = tokio::select! {
            t = rx.recv() => match t { Some(t) => t, None => return },
            _ = stop.cancelled() => return,
        };
        let mut tokens = vec![first];
        let mut size = origin.len() + tokens[0].len() + 1;
        while size < MAX_PAYLOAD {
            match rx.try_recv() {
                Ok(t) => {
                    size += t.len() + 1;
                    tokens.push(t);
                }
                Err(_) => break,
            }
        }
        tokens.sort_unstable();
        tokens.dedup();
        let payload = format!("{origin} {}", tokens.join(" "));
        let sent = async {
            let conn = db.conn().await?;
            conn.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &payload]).await?;
            Ok::<_, StoreError>(())
        };
        if let Err(e) = sent.await {
            tracing::debug!(error = %e, "announcing changes to other replicas failed; they will re-read");
        }
    }
}

async fn listen_loop(db: Arc<Db>, origin: String, incoming: broadcast::Sender<StoreEvent>, stop: CancellationToken) {
    let mut pause = Duration::from_millis(250);
    loop {
        let outcome = tokio::select! {
            r = listen_once(&db, &origin, &incoming) => r,
            _ = stop.cancelled() => return,
        };
        if let Err(e) = outcome {
            tracing::warn!(error = %e, "listening for other replicas' changes stopped; reconnecting (polling meanwhile)");
        }
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = stop.cancelled() => return,
        }
        pause = (pause * 2).min(Duration::from_secs(5));
    }
}

/// One listening connection, until it fails.
async fn listen_once(db: &Db, origin: &str, incoming: &broadcast::Sender<StoreEvent>) -> Result<(), StoreError> {
    if db.config.get_ssl_mode() == SslMode::Disable {
        let (client, conn) = db.config.connect(tokio_postgres::NoTls).await?;
        listen_on(client, conn, origin, incoming).await
    } else {
        let (client, conn) = db.config.connect(super::tls::connector(&db.tls)?).await?;
        listen_on(client, conn, origin, incoming).await
    }
}

async fn listen_on<S, T>(
    client: Client,
    mut conn: Connection<S, T>,
    origin: &str,
    incoming: &broadcast::Sender<StoreEvent>,
) -> Result<(), StoreError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (tx, mut payloads) = mpsc::unbounded_channel();
    // The connection is driven here: it carries the client's statements and the notifications.
    let driver = tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| conn.poll_message(cx));
        while let Some(m) = messages.next().await {
            match m {
                Ok(AsyncMessage::Notification(n)) => {
                    let _ = tx.send(n.payload().to_string());
                }
                Ok(_) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    });
    let _abort_driver = AbortOnDrop(driver.abort_handle());
    client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
    // Whatever was announced while this replica was not listening has been missed.
    let _ = incoming.send(StoreEvent::Resync);
    let mut ping = tokio::time::interval(PING);
    ping.tick().await;
    loop {
        tokio::select! {
            p = payloads.recv() => match p {
                Some(p) => {
                    for e in parse(&p, origin) {
                        let _ = incoming.send(e);
                    }
                }
                None => break,
            },
            _ = ping.tick() => {
                client.simple_query("SELECT 1").await?;
            }
        }
    }
    match driver.await {
        Ok(Err(e)) => Err(e.into()),
        _ => Err(StoreError::Unavailable("the listening connection closed".into())),
    }
}

struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_carry_events_and_a_replica_skips_its_own() {
        let events = [
            StoreEvent::Queued,
            StoreEvent::TaskChanged("task_1".into()),
            StoreEvent::CancelRequested("task_2".into()),
            StoreEvent::WebhookDue,
            StoreEvent::ExportDue,
        ];
        let payload = format!("A {}", events.iter().map(encode).collect::<Vec<_>>().join(" "));
        assert_eq!(parse(&payload, "B"), events.to_vec());
        assert!(parse(&payload, "A").is_empty(), "its own announcements");
        assert_eq!(parse("B t: x:1 zz q", "A"), vec![StoreEvent::Queued], "unknown tokens are skipped");
    }
}
