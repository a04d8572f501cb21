//! Logging for the daemons: `tracing` events go to syslog (facility
//! `daemon`, like the MooseFS daemons) and to stderr.
//!
//! The stderr output is always on in the foreground (`-f`). When
//! daemonized with [`crate::daemon::daemonize_deferred`], stderr is relayed
//! to the terminal of the starting process until
//! [`crate::daemon::StartupNotifier::ready`], which switches it off
//! ([`set_stderr_enabled`]), so start-up messages are seen by the operator
//! and later ones only reach syslog.

use std::ffi::CString;
use std::fmt::{self, Write as _};
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Once, OnceLock};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::{filter_fn, EnvFilter, FilterExt, LevelFilter};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

static INIT: Once = Once::new();
static STDERR_ENABLED: AtomicBool = AtomicBool::new(true);
static SYSLOG_IDENT: OnceLock<CString> = OnceLock::new();

/// Installs the global logger: syslog (ident `ident`, facility daemon,
/// level info, or debug when `verbose`) plus formatted output on stderr
/// (filtered by `RUST_LOG`, default `info`, or `debug` when `verbose`).
///
/// With `foreground == false` stderr output continues until
/// [`set_stderr_enabled`]`(false)` (done by the daemonizing code once
/// start-up is over). Also logs panics. Only the first call has an effect.
pub fn init(ident: &str, foreground: bool, verbose: bool) {
    INIT.call_once(|| {
        let ident = SYSLOG_IDENT.get_or_init(|| {
            CString::new(ident.replace('\0', "")).unwrap_or_else(|_| CString::from(c"antler"))
        });
        // SAFETY: `ident` lives in a static for the rest of the process, as
        // openlog(3) requires (it keeps the pointer).
        unsafe {
            libc::openlog(
                ident.as_ptr(),
                libc::LOG_PID | libc::LOG_NDELAY,
                libc::LOG_DAEMON,
            )
        };

        let default = if verbose { "debug" } else { "info" };
        let env = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
        let stderr_on = filter_fn(|_| STDERR_ENABLED.load(Ordering::Relaxed));
        let stderr_layer = tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(foreground && std::io::stderr().is_terminal())
            .with_filter(env.and(stderr_on));
        let syslog_level = if verbose {
            LevelFilter::DEBUG
        } else {
            LevelFilter::INFO
        };
        let syslog_layer = SyslogLayer::new(write_syslog).with_filter(syslog_level);
        let installed = tracing_subscriber::registry()
            .with(stderr_layer)
            .with(syslog_layer)
            .try_init()
            .is_ok();

        if installed {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                tracing::error!("{info}");
                previous(info);
            }));
        }
    });
}

/// Logging for unit tests: output goes to the test harness's captured
/// writer (`RUST_LOG` respected, default `debug`). Safe to call repeatedly.
pub fn init_for_tests() {
    let env = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("debug"));
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter(env)
        .try_init();
}

/// Switches the stderr output of [`init`] on or off (syslog is unaffected).
pub fn set_stderr_enabled(on: bool) {
    STDERR_ENABLED.store(on, Ordering::Relaxed);
}

/// The syslog priority for a `tracing` level.
pub fn syslog_priority(level: &Level) -> libc::c_int {
    match *level {
        Level::ERROR => libc::LOG_ERR,
        Level::WARN => libc::LOG_WARNING,
        Level::INFO => libc::LOG_INFO,
        Level::DEBUG | Level::TRACE => libc::LOG_DEBUG,
    }
}

fn write_syslog(priority: libc::c_int, message: &str) {
    let Ok(text) = CString::new(message.replace('\0', "\\0")) else {
        return;
    };
    // SAFETY: both pointers are valid NUL-terminated strings for the call,
    // and the "%s" format consumes exactly the one string argument.
    unsafe { libc::syslog(priority, c"%s".as_ptr(), text.as_ptr()) };
}

/// A `tracing_subscriber` layer handing each event, formatted as
/// `message key=value ...`, with its syslog priority to `sink`.
struct SyslogLayer<F> {
    sink: F,
}

impl<F> SyslogLayer<F>
where
    F: Fn(libc::c_int, &str) + Send + Sync + 'static,
{
    fn new(sink: F) -> Self {
        SyslogLayer { sink }
    }
}

impl<S, F> Layer<S> for SyslogLayer<F>
where
    S: Subscriber,
    F: Fn(libc::c_int, &str) + Send + Sync + 'static,
{
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut visitor = MessageVisitor::default();
        event.record(&mut visitor);
        (self.sink)(syslog_priority(event.metadata().level()), &visitor.finish());
    }
}

/// Collects an event's `message` and its other fields.
#[derive(Default)]
struct MessageVisitor {
    message: String,
    fields: String,
}

impl MessageVisitor {
    fn finish(self) -> String {
        if self.message.is_empty() {
            self.fields.trim_start().to_string()
        } else {
            self.message + &self.fields
        }
    }
}

impl Visit for MessageVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else if !field.name().starts_with("log.") {
            let _ = write!(self.fields, " {}={}", field.name(), value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else if !field.name().starts_with("log.") {
            let _ = write!(self.fields, " {}={:?}", field.name(), value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::layer::SubscriberExt;

    #[test]
    fn priorities() {
        assert_eq!(syslog_priority(&Level::ERROR), libc::LOG_ERR);
        assert_eq!(syslog_priority(&Level::WARN), libc::LOG_WARNING);
        assert_eq!(syslog_priority(&Level::INFO), libc::LOG_INFO);
        assert_eq!(syslog_priority(&Level::DEBUG), libc::LOG_DEBUG);
        assert_eq!(syslog_priority(&Level::TRACE), libc::LOG_DEBUG);
    }

    #[test]
    fn syslog_layer_formats_message_and_fields() {
        let seen: Arc<Mutex<Vec<(libc::c_int, String)>>> = Arc::default();
        let sink = {
            let seen = Arc::clone(&seen);
            move |prio: libc::c_int, msg: &str| seen.lock().unwrap().push((prio, msg.to_string()))
        };
        let subscriber = tracing_subscriber::registry()
            .with(SyslogLayer::new(sink).with_filter(LevelFilter::INFO));
        tracing::subscriber::with_default(subscriber, || {
            tracing::error!("disk {} failed", "/mnt/hdd1");
            tracing::warn!(chunk = 0x10u64, path = "/a", "damaged chunk");
            tracing::info!(count = 3);
            tracing::debug!("filtered out");
        });
        let seen = seen.lock().unwrap();
        assert_eq!(
            *seen,
            vec![
                (libc::LOG_ERR, "disk /mnt/hdd1 failed".to_string()),
                (
                    libc::LOG_WARNING,
                    "damaged chunk chunk=16 path=/a".to_string()
                ),
                (libc::LOG_INFO, "count=3".to_string()),
            ]
        );
    }

    #[test]
    fn stderr_switch() {
        set_stderr_enabled(false);
        assert!(!STDERR_ENABLED.load(Ordering::Relaxed));
        set_stderr_enabled(true);
        assert!(STDERR_ENABLED.load(Ordering::Relaxed));
    }

    #[test]
    fn init_for_tests_twice_is_fine() {
        init_for_tests();
        init_for_tests();
        tracing::info!("logging from a test");
    }
}
