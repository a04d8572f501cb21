//! Email on every role change, through an SMTP relay (`[smtp]`).
//!
//! [`Mailer`] owns one thread; [`Mailer::report`] only queues, so a slow or dead mail
//! server never delays the VRRP loop.
//!
//! - One mail per transition, subject `[ha-agent] HOST INSTANCE: FROM -> TO`, body with
//!   host, instance, old and new state, VIPs, reason and time (RFC 3339, UTC).
//! - The first change after a quiet period opens a coalescing window of
//!   [`COALESCE_WINDOW`]; changes arriving in it are sent together at its end.
//! - A failed attempt is logged and retried after 1 s, 2 s, 4 s … capped at 60 s; the
//!   queue keeps every change (up to [`MAX_PENDING`]) in order meanwhile.
//! - Whenever more than [`SUMMARY_THRESHOLD`] changes are waiting at a send attempt (a
//!   burst of flaps, or the server was down), ONE summary mail lists them all in order
//!   instead of one mail each.
//! - STARTTLS (certificate checked against the webpki roots, or only against the CA
//!   certificates of `ca_file` for a relay with a private CA) and AUTH (PLAIN or LOGIN,
//!   password read once at start from `password_file`, which must not be accessible to
//!   group or others) are optional.

use crate::config::Smtp;
use crate::fsm::State;
use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, CertificateStore, Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{Message, SmtpTransport, Transport};
use std::collections::VecDeque;
use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use thiserror::Error;
use tracing::{debug, error, info, warn};

/// Changes arriving within this window after a quiet period are sent together.
pub const COALESCE_WINDOW: Duration = Duration::from_secs(2);
/// More than this many waiting changes are sent as one summary mail.
pub const SUMMARY_THRESHOLD: usize = 5;
/// At most this many changes are kept while the server is unreachable; older ones are
/// dropped (and the summary says how many).
pub const MAX_PENDING: usize = 1000;
/// First retry delay; doubled after each failure up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// Longest retry delay.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Network timeout of one SMTP attempt.
pub const SMTP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a `Mailer` dropped without [`Mailer::shutdown`] keeps trying to flush.
const DROP_GRACE: Duration = Duration::from_secs(5);

/// Why the mailer cannot start.
#[derive(Debug, Error)]
pub enum EmailError {
    /// The password file cannot be read.
    #[error("smtp password_file {path}: {source}")]
    PasswordFile {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The password file is open to group or others.
    #[error(
        "smtp password_file {path} has mode {mode:04o}: it must not be accessible to group or \
         others (chmod 600 {path})"
    )]
    InsecurePasswordFile {
        /// File.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The password file is empty.
    #[error("smtp password_file {0} is empty")]
    EmptyPassword(PathBuf),
    /// `user` without `password_file` or the reverse.
    #[error("smtp: user and password_file go together")]
    IncompleteAuth,
    /// `server` is not `host[:port]`.
    #[error("smtp server '{0}': expected host:port")]
    BadServer(String),
    /// `from` or a `to` address does not parse.
    #[error("smtp {field} '{address}': {message}")]
    BadAddress {
        /// `from` or `to`.
        field: &'static str,
        /// The address.
        address: String,
        /// What is wrong.
        message: String,
    },
    /// No recipient.
    #[error("smtp: no recipient in 'to'")]
    NoRecipient,
    /// The TLS settings for STARTTLS cannot be built.
    #[error("smtp STARTTLS setup for '{host}': {message}")]
    Tls {
        /// Server name.
        host: String,
        /// What lettre said.
        message: String,
    },
    /// The `ca_file` cannot be read or holds no usable certificate.
    #[error("smtp ca_file {path}: {message}")]
    CaFile {
        /// File.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The mail thread cannot be created.
    #[error("cannot start the mail thread: {0}")]
    Thread(std::io::Error),
}

/// One role change to mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleChange {
    /// This node (`router_id`).
    pub host: String,
    /// Instance name.
    pub instance: String,
    /// Old state.
    pub from: State,
    /// New state.
    pub to: State,
    /// The instance's virtual addresses (`a.b.c.d/len`).
    pub vips: Vec<String>,
    /// Why (see [`crate::fsm::Reason`]'s `Display`).
    pub reason: String,
    /// When it happened.
    pub at: SystemTime,
}

/// Formats `t` as RFC 3339 in UTC with milliseconds, e.g. `2024-05-01T12:34:56.789Z`.
pub fn rfc3339_utc(t: SystemTime) -> String {
    let (secs, millis) = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => (d.as_secs() as i64, d.subsec_millis()),
        Err(e) => {
            let d = e.duration();
            let (s, ms) = (d.as_secs() as i64, d.subsec_millis());
            if ms == 0 {
                (-s, 0)
            } else {
                (-s - 1, 1000 - ms)
            }
        }
    };
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

/// Proleptic Gregorian date of a day count since 1970-01-01 (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn vips_text(vips: &[String]) -> String {
    if vips.is_empty() {
        "(none)".into()
    } else {
        vips.join(", ")
    }
}

/// Subject and body of the mail for one change.
pub fn single_mail(ev: &RoleChange) -> (String, String) {
    let subject = format!(
        "[ha-agent] {} {}: {} -> {}",
        ev.host,
        ev.instance,
        ev.from.name(),
        ev.to.name()
    );
    let body = format!(
        "ha-agent role change\n\
         \n\
         host:     {}\n\
         instance: {}\n\
         state:    {} -> {}\n\
         vips:     {}\n\
         reason:   {}\n\
         time:     {}\n",
        ev.host,
        ev.instance,
        ev.from.name(),
        ev.to.name(),
        vips_text(&ev.vips),
        ev.reason,
        rfc3339_utc(ev.at)
    );
    (subject, body)
}

/// Subject and body of the summary mail for `events` (in order); `dropped` older changes
/// were discarded because the queue was full.
pub fn summary_mail(host: &str, events: &[RoleChange], dropped: u64) -> (String, String) {
    let total = events.len() as u64 + dropped;
    let subject = format!("[ha-agent] {host}: {total} role changes (summary)");
    let mut body = format!(
        "ha-agent: {total} role changes on {host} were waiting to be mailed\n\
         (a burst of flaps, or the mail server was unreachable).\n\
         In order, oldest first:\n\n"
    );
    if dropped > 0 {
        let _ = writeln!(
            body,
            "      ({dropped} older changes were dropped: queue full)"
        );
    }
    for (i, ev) in events.iter().enumerate() {
        let _ = writeln!(
            body,
            "{:>4}. {}  {}  {} -> {}\n      reason: {}",
            i + 1,
            rfc3339_utc(ev.at),
            ev.instance,
            ev.from.name(),
            ev.to.name(),
            ev.reason,
        );
    }
    // The latest change of each instance, in the order of those changes.
    let mut last: Vec<&RoleChange> = Vec::new();
    for ev in events.iter().rev() {
        if !last.iter().any(|l| l.instance == ev.instance) {
            last.push(ev);
        }
    }
    if !last.is_empty() {
        body.push_str("\nLatest state:\n");
        for ev in last.iter().rev() {
            let _ = writeln!(
                body,
                "   {}: {} since {}\n      vips: {}",
                ev.instance,
                ev.to.name(),
                rfc3339_utc(ev.at),
                vips_text(&ev.vips)
            );
        }
    }
    (subject, body)
}

#[derive(Debug)]
enum Msg {
    Report(RoleChange),
    Shutdown(Instant),
}

/// Mails role changes from its own thread.
///
/// Dropping a `Mailer` without [`Mailer::shutdown`] lets its thread try to flush for a
/// few seconds in the background.
#[derive(Debug)]
pub struct Mailer {
    tx: mpsc::Sender<Msg>,
    worker: JoinHandle<()>,
}

impl Mailer {
    /// Validates `cfg` (addresses, server, TLS, password file) and starts the thread.
    /// `router_id` names this node in summary mails and in the SMTP greeting.
    pub fn start(cfg: Smtp, router_id: String) -> Result<Mailer, EmailError> {
        let relay = Relay::new(&cfg, &router_id)?;
        let (tx, rx) = mpsc::channel();
        let worker = thread::Builder::new()
            .name("ha-mailer".into())
            .spawn(move || Worker::new(relay, router_id, rx).run())
            .map_err(EmailError::Thread)?;
        Ok(Mailer { tx, worker })
    }

    /// Queues one change. Never blocks.
    pub fn report(&self, ev: RoleChange) {
        if let Err(mpsc::SendError(Msg::Report(ev))) = self.tx.send(Msg::Report(ev)) {
            error!(instance = %ev.instance, "mail thread is gone; role change not mailed");
        }
    }

    /// Tries to send everything queued for at most `grace`, then stops the thread.
    /// Changes still unsent at the end are logged as lost.
    pub fn shutdown(self, grace: Duration) {
        let until = Instant::now() + grace;
        let _ = self.tx.send(Msg::Shutdown(until));
        drop(self.tx);
        let give_up = until + Duration::from_secs(1);
        while !self.worker.is_finished() && Instant::now() < give_up {
            thread::sleep(Duration::from_millis(10));
        }
        if self.worker.is_finished() {
            if self.worker.join().is_err() {
                error!("mail thread panicked");
            }
        } else {
            warn!("mail thread still busy with the SMTP server at shutdown; leaving it behind");
        }
    }
}

/// Everything needed to talk to the relay.
struct Relay {
    host: String,
    port: u16,
    tls: Option<TlsParameters>,
    credentials: Option<Credentials>,
    hello: Option<ClientId>,
    /// Right-hand side of Message-IDs.
    id_domain: String,
    /// Mails built so far (part of the Message-ID).
    sent: u64,
    from: Mailbox,
    to: Vec<Mailbox>,
}

fn parse_server(server: &str) -> Result<(String, u16), EmailError> {
    let bad = || EmailError::BadServer(server.to_string());
    let (host, port) = if let Some(rest) = server.strip_prefix('[') {
        let (h, tail) = rest.split_once(']').ok_or_else(bad)?;
        let port = match tail.strip_prefix(':') {
            Some(p) => p.parse().map_err(|_| bad())?,
            None if tail.is_empty() => 25,
            None => return Err(bad()),
        };
        (h.to_string(), port)
    } else {
        match server.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => (h.to_string(), p.parse().map_err(|_| bad())?),
            Some(_) => return Err(bad()),
            None => (server.to_string(), 25),
        }
    };
    if host.is_empty() || port == 0 {
        return Err(bad());
    }
    Ok((host, port))
}

fn read_password(path: &PathBuf) -> Result<String, EmailError> {
    let io = |source| EmailError::PasswordFile {
        path: path.clone(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(EmailError::InsecurePasswordFile {
            path: path.clone(),
            mode,
        });
    }
    let text = std::fs::read_to_string(path).map_err(io)?;
    let password = text.trim_end_matches(['\n', '\r']).to_string();
    if password.is_empty() {
        return Err(EmailError::EmptyPassword(path.clone()));
    }
    Ok(password)
}

/// The CA certificates of `ca_file` (PEM, one or more), which become the only roots
/// STARTTLS trusts.
fn read_ca_file(path: &PathBuf) -> Result<Certificate, EmailError> {
    let bad = |message: String| EmailError::CaFile {
        path: path.clone(),
        message,
    };
    let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    if !pem
        .windows(b"-----BEGIN CERTIFICATE-----".len())
        .any(|w| w == b"-----BEGIN CERTIFICATE-----")
    {
        return Err(bad("no PEM certificate in it".into()));
    }
    Certificate::from_pem(&pem).map_err(|e| bad(e.to_string()))
}

impl Relay {
    fn new(cfg: &Smtp, router_id: &str) -> Result<Relay, EmailError> {
        let (host, port) = parse_server(&cfg.server)?;
        let address = |field: &'static str, a: &str| {
            a.parse::<Mailbox>().map_err(|e| EmailError::BadAddress {
                field,
                address: a.to_string(),
                message: e.to_string(),
            })
        };
        let from = address("from", &cfg.from)?;
        let to = cfg
            .to
            .iter()
            .map(|a| address("to", a))
            .collect::<Result<Vec<_>, _>>()?;
        if to.is_empty() {
            return Err(EmailError::NoRecipient);
        }
        let credentials = match (&cfg.user, &cfg.password_file) {
            (Some(user), Some(path)) => Some(Credentials::new(user.clone(), read_password(path)?)),
            (None, None) => None,
            _ => return Err(EmailError::IncompleteAuth),
        };
        let tls = if cfg.starttls {
            let tls_error = |e: lettre::transport::smtp::Error| EmailError::Tls {
                host: host.clone(),
                message: e.to_string(),
            };
            let params = match &cfg.ca_file {
                None => TlsParameters::new(host.clone()).map_err(tls_error)?,
                Some(path) => {
                    let ca = read_ca_file(path)?;
                    TlsParameters::builder(host.clone())
                        .certificate_store(CertificateStore::None)
                        .add_root_certificate(ca)
                        .build()
                        .map_err(tls_error)?
                }
            };
            Some(params)
        } else {
            if credentials.is_some() {
                warn!(
                    server = %cfg.server,
                    "smtp AUTH without STARTTLS: the password crosses the network in clear"
                );
            }
            None
        };
        let hostname_like = !router_id.is_empty()
            && router_id.len() <= 253
            && router_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        let hello = hostname_like.then(|| ClientId::Domain(router_id.to_string()));
        let id_domain = if hostname_like {
            router_id.to_string()
        } else {
            "ha-agent.invalid".into()
        };
        Ok(Relay {
            host,
            port,
            tls,
            credentials,
            hello,
            id_domain,
            from,
            to,
            sent: 0,
        })
    }

    fn transport(&self, timeout: Duration) -> SmtpTransport {
        let mut b = SmtpTransport::builder_dangerous(self.host.as_str())
            .port(self.port)
            .timeout(Some(timeout))
            .tls(match &self.tls {
                Some(p) => Tls::Required(p.clone()),
                None => Tls::None,
            });
        if let Some(c) = &self.credentials {
            b = b.credentials(c.clone());
        }
        if let Some(h) = &self.hello {
            b = b.hello_name(h.clone());
        }
        b.build()
    }

    /// Builds and sends one mail.
    fn send(&mut self, subject: String, body: String, timeout: Duration) -> Result<(), String> {
        self.sent += 1;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let id = format!(
            "<{}.{:09}.{}.{}@{}>",
            now.as_secs(),
            now.subsec_nanos(),
            std::process::id(),
            self.sent,
            self.id_domain
        );
        let mut m = Message::builder()
            .from(self.from.clone())
            .subject(subject)
            .header(ContentType::TEXT_PLAIN)
            .message_id(Some(id));
        for to in &self.to {
            m = m.to(to.clone());
        }
        let msg = m
            .body(body)
            .map_err(|e| format!("cannot build the mail: {e}"))?;
        self.transport(timeout)
            .send(&msg)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

struct Worker {
    relay: Relay,
    router_id: String,
    rx: mpsc::Receiver<Msg>,
    pending: VecDeque<RoleChange>,
    dropped: u64,
    /// Consecutive failed attempts.
    failures: u32,
    /// No attempt before this (backoff after a failure).
    retry_at: Option<Instant>,
    /// End of the coalescing window.
    window_end: Instant,
    /// Stop once flushed, or at this instant.
    stop_at: Option<Instant>,
    /// Every sender is gone.
    closed: bool,
}

impl Worker {
    fn new(relay: Relay, router_id: String, rx: mpsc::Receiver<Msg>) -> Worker {
        Worker {
            relay,
            router_id,
            rx,
            pending: VecDeque::new(),
            dropped: 0,
            failures: 0,
            retry_at: None,
            window_end: Instant::now(),
            stop_at: None,
            closed: false,
        }
    }

    fn push(&mut self, ev: RoleChange) {
        let (instance, from, to) = (&ev.instance, ev.from.name(), ev.to.name());
        debug!(%instance, from, to, "role change queued for mail");
        if self.pending.len() >= MAX_PENDING {
            self.pending.pop_front();
            self.dropped += 1;
        }
        self.pending.push_back(ev);
    }

    fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Report(ev) => {
                if self.pending.is_empty() {
                    self.window_end = Instant::now() + COALESCE_WINDOW;
                }
                self.push(ev);
            }
            Msg::Shutdown(at) => self.stop_at = Some(self.stop_at.map_or(at, |s| s.min(at))),
        }
    }

    fn close(&mut self) {
        self.closed = true;
        if self.stop_at.is_none() {
            self.stop_at = Some(Instant::now() + DROP_GRACE);
        }
    }

    /// When the next attempt may start.
    fn attempt_at(&self) -> Instant {
        let retry = self.retry_at.unwrap_or_else(Instant::now);
        if self.stop_at.is_some() {
            retry // no coalescing when stopping
        } else {
            retry.max(self.window_end)
        }
    }

    fn run(mut self) {
        loop {
            if self.pending.is_empty() {
                if self.stop_at.is_some() {
                    break;
                }
                match self.rx.recv() {
                    Ok(m) => self.handle(m),
                    Err(_) => self.close(),
                }
                continue;
            }
            let at = self.attempt_at();
            if let Some(stop) = self.stop_at {
                if at >= stop {
                    break;
                }
            }
            let now = Instant::now();
            if now < at {
                if self.closed {
                    thread::sleep(at - now);
                } else {
                    match self.rx.recv_timeout(at - now) {
                        Ok(m) => self.handle(m),
                        Err(RecvTimeoutError::Timeout) => {}
                        Err(RecvTimeoutError::Disconnected) => self.close(),
                    }
                }
                continue;
            }
            // Take whatever else is already queued before deciding summary vs single.
            while let Ok(m) = self.rx.try_recv() {
                self.handle(m);
            }
            self.attempt();
        }
        if !self.pending.is_empty() {
            error!(
                count = self.pending.len() as u64 + self.dropped,
                "stopping with role-change mails unsent"
            );
        }
    }

    fn timeout(&self) -> Duration {
        match self.stop_at {
            Some(s) => SMTP_TIMEOUT
                .min(s.saturating_duration_since(Instant::now()))
                .max(Duration::from_millis(100)),
            None => SMTP_TIMEOUT,
        }
    }

    /// One send attempt of everything pending.
    fn attempt(&mut self) {
        let result = if self.pending.len() as u64 + self.dropped > SUMMARY_THRESHOLD as u64 {
            let events: Vec<RoleChange> = self.pending.iter().cloned().collect();
            let (subject, body) = summary_mail(&self.router_id, &events, self.dropped);
            match self.relay.send(subject, body, self.timeout()) {
                Ok(()) => {
                    info!(
                        count = events.len() as u64 + self.dropped,
                        "summary mail sent"
                    );
                    self.pending.clear();
                    self.dropped = 0;
                    Ok(())
                }
                Err(e) => Err(e),
            }
        } else {
            let mut res = Ok(());
            while let Some(ev) = self.pending.front() {
                let (subject, body) = single_mail(ev);
                match self.relay.send(subject, body, self.timeout()) {
                    Ok(()) => {
                        let (instance, from, to) = (&ev.instance, ev.from.name(), ev.to.name());
                        info!(%instance, from, to, "role-change mail sent");
                        self.pending.pop_front();
                    }
                    Err(e) => {
                        res = Err(e);
                        break;
                    }
                }
            }
            res
        };
        match result {
            Ok(()) => {
                self.failures = 0;
                self.retry_at = None;
            }
            Err(e) => {
                let delay = FIRST_BACKOFF
                    .saturating_mul(1u32 << self.failures.min(16))
                    .min(MAX_BACKOFF);
                self.failures = self.failures.saturating_add(1);
                self.retry_at = Some(Instant::now() + delay);
                warn!(
                    server = %format!("{}:{}", self.relay.host, self.relay.port),
                    attempt = self.failures,
                    waiting = self.pending.len() as u64 + self.dropped,
                    retry_in = ?delay,
                    error = %e,
                    "cannot send role-change mail"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64, ms: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(ms)
    }

    #[test]
    fn rfc3339() {
        assert_eq!(rfc3339_utc(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_utc(at(951_827_696, 5)), "2000-02-29T12:34:56.005Z");
        assert_eq!(
            rfc3339_utc(at(1_735_689_599, 999)),
            "2024-12-31T23:59:59.999Z"
        );
        assert_eq!(
            rfc3339_utc(at(4_107_542_400, 0)),
            "2100-03-01T00:00:00.000Z"
        );
        assert_eq!(
            rfc3339_utc(UNIX_EPOCH - Duration::from_millis(1)),
            "1969-12-31T23:59:59.999Z"
        );
    }

    #[test]
    fn starttls_setup_builds() {
        let cfg = Smtp {
            server: "mail.example.com:587".into(),
            from: "ha@example.com".into(),
            to: vec!["Ops <ops@example.com>".into()],
            starttls: true,
            user: None,
            password_file: None,
            ca_file: None,
        };
        let r = Relay::new(&cfg, "node1").unwrap();
        assert!(r.tls.is_some());
        assert_eq!((r.host.as_str(), r.port), ("mail.example.com", 587));
        let mut bad = cfg.clone();
        bad.to = vec!["not an address".into()];
        let e = Relay::new(&bad, "node1").err().unwrap().to_string();
        assert!(e.starts_with("smtp to 'not an address':"), "{e}");
        let mut bad = cfg;
        bad.user = Some("u".into());
        assert!(matches!(
            Relay::new(&bad, "node1"),
            Err(EmailError::IncompleteAuth)
        ));
    }

    #[test]
    fn servers() {
        assert_eq!(
            parse_server("127.0.0.1:2525").unwrap(),
            ("127.0.0.1".into(), 2525)
        );
        assert_eq!(
            parse_server("mail.example.com").unwrap(),
            ("mail.example.com".into(), 25)
        );
        assert_eq!(parse_server("[::1]:587").unwrap(), ("::1".into(), 587));
        assert!(parse_server("::1:25").is_err());
        assert!(parse_server("host:x").is_err());
        assert!(parse_server(":25").is_err());
    }

    #[test]
    fn mails() {
        let ev = RoleChange {
            host: "node1".into(),
            instance: "VI_MFS".into(),
            from: State::Backup,
            to: State::Master,
            vips: vec!["192.0.2.100/24".into()],
            reason: "master timeout".into(),
            at: at(1_735_689_599, 0),
        };
        let (s, b) = single_mail(&ev);
        assert_eq!(s, "[ha-agent] node1 VI_MFS: BACKUP -> MASTER");
        assert!(b.contains("state:    BACKUP -> MASTER\n"), "{b}");
        assert!(b.contains("time:     2024-12-31T23:59:59.000Z\n"), "{b}");
        let (s, b) = summary_mail("node1", &[ev.clone(), ev], 3);
        assert_eq!(s, "[ha-agent] node1: 5 role changes (summary)");
        assert!(b.contains("3 older changes were dropped"), "{b}");
        assert!(
            b.contains("   2. 2024-12-31T23:59:59.000Z  VI_MFS  BACKUP -> MASTER"),
            "{b}"
        );
        assert!(b.contains("VI_MFS: MASTER since"), "{b}");
    }
}
