//! Beyond upstream: keeping the registration true while the registrar runs.
//!
//! Upstream registers once (node-driver-registrar#139: after the driver
//! restarts nothing re-registers; #57: a deleted registration socket is
//! never re-created). Here the main loop asks [`next_step`] every tick:
//!
//! * the driver's connection broke (the CSI client notices at once, even
//!   when idle) → ask the driver's name every tick until it answers;
//!   once it answers with the same name, re-create the registration socket,
//!   which the kubelet's plugin watcher sees as a new plugin: it
//!   deregisters the old one, calls `GetInfo`, `NodeGetInfo` on the driver
//!   and re-installs it in CSINode with what the driver says now;
//! * the registration socket vanished or is another file → re-create it.
//!
//! [`Callbacks`] notices a kubelet that never calls back after a socket
//! was created, the usual sign of a wrong `--plugin-registration-path`
//! mount, and says so once.

use std::time::Duration;

use tokio::time::Instant;

use crate::socket::FileId;

/// How often the main loop checks.
pub const TICK: Duration = Duration::from_secs(1);

/// How long the kubelet may take to call back before a warning is logged.
/// The kubelet's plugin watcher reacts to a new socket within about a
/// second; its whole registration (including a `NodeGetInfo` that may
/// take up to 2 minutes) normally ends within a few.
pub const CALLBACK_WARNING_AFTER: Duration = Duration::from_secs(30);

/// Why the registration socket is re-created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The driver came back after its connection broke.
    DriverRestarted,
    /// Our socket file is gone.
    SocketRemoved,
    /// Another file took our socket's path.
    SocketReplaced,
}

impl Reason {
    /// A log-friendly phrase.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::DriverRestarted => "the CSI driver restarted",
            Reason::SocketRemoved => "the registration socket was removed",
            Reason::SocketReplaced => "the registration socket was replaced",
        }
    }
}

/// What the main loop does this tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Nothing to do.
    Idle,
    /// The driver's connection broke: ask its name; see [`after_driver_answer`].
    AskDriver,
    /// Re-create the registration socket.
    Reregister(Reason),
}

/// What the main loop knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct State {
    /// The identity of the registration socket we created.
    pub socket: FileId,
    /// The driver's connection broke and the driver has not answered since.
    pub driver_lost: bool,
}

/// The decision for one tick, from the state and what is at the
/// registration path now. A lost driver goes first: re-creating the
/// socket while the driver is away would make the kubelet's `NodeGetInfo`
/// fail, and upstream's answer to a failed registration is to exit.
pub fn next_step(state: &State, socket_now: Option<FileId>) -> Step {
    if state.driver_lost {
        return Step::AskDriver;
    }
    match socket_now {
        Some(id) if id == state.socket => Step::Idle,
        Some(_) => Step::Reregister(Reason::SocketReplaced),
        None => Step::Reregister(Reason::SocketRemoved),
    }
}

/// What the driver's answer after a loss means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DriverCheck {
    /// Still unreachable (or failing): ask again next tick.
    StillAway,
    /// Back under the registered name: re-register.
    Back,
    /// Back under another name: the socket name would change; exit.
    Renamed(String),
}

/// Judges `GetPluginInfo`'s result after a loss.
pub fn after_driver_answer<E>(registered: &str, answer: Result<String, E>) -> DriverCheck {
    match answer {
        Ok(name) if name == registered => DriverCheck::Back,
        Ok(name) => DriverCheck::Renamed(name),
        Err(_) => DriverCheck::StillAway,
    }
}

/// A kubelet silence worth a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Silence {
    /// No `GetInfo` at all since the socket was created.
    NoGetInfo,
    /// `GetInfo` came but no `NotifyRegistrationStatus`.
    NoStatus,
}

/// Tracks the kubelet's calls for the current registration socket.
#[derive(Debug, Clone)]
pub struct Callbacks {
    since: Instant,
    got_info: bool,
    registered: bool,
    warned: bool,
}

impl Callbacks {
    /// A fresh socket created at `now`.
    pub fn new(now: Instant) -> Self {
        Callbacks {
            since: now,
            got_info: false,
            registered: false,
            warned: false,
        }
    }

    /// The kubelet called `GetInfo`.
    pub fn on_get_info(&mut self) {
        self.got_info = true;
    }

    /// The kubelet reported a successful registration. Returns how long it
    /// took when a silence warning was logged before, so the recovery can
    /// be logged too.
    pub fn on_registered(&mut self, now: Instant) -> Option<Duration> {
        self.got_info = true;
        let first = !self.registered;
        self.registered = true;
        (first && self.warned).then(|| now.saturating_duration_since(self.since))
    }

    /// Whether the kubelet confirmed the registration of this socket.
    pub fn registered(&self) -> bool {
        self.registered
    }

    /// The silence to warn about at `now`, at most once per socket.
    pub fn overdue(&mut self, now: Instant) -> Option<Silence> {
        if self.registered
            || self.warned
            || now.saturating_duration_since(self.since) < CALLBACK_WARNING_AFTER
        {
            return None;
        }
        self.warned = true;
        Some(if self.got_info {
            Silence::NoStatus
        } else {
            Silence::NoGetInfo
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn ids() -> (FileId, FileId) {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.sock");
        let b = dir.path().join("b.sock");
        let _la = std::os::unix::net::UnixListener::bind(&a).unwrap();
        let _lb = std::os::unix::net::UnixListener::bind(&b).unwrap();
        assert_ne!(
            std::fs::metadata(&a).unwrap().ino(),
            std::fs::metadata(&b).unwrap().ino()
        );
        (
            crate::socket::socket_id(&a).unwrap(),
            crate::socket::socket_id(&b).unwrap(),
        )
    }

    #[test]
    fn steps() {
        let (ours, other) = ids();
        let healthy = State {
            socket: ours,
            driver_lost: false,
        };
        assert_eq!(next_step(&healthy, Some(ours)), Step::Idle);
        assert_eq!(
            next_step(&healthy, None),
            Step::Reregister(Reason::SocketRemoved)
        );
        assert_eq!(
            next_step(&healthy, Some(other)),
            Step::Reregister(Reason::SocketReplaced)
        );
        let lost = State {
            driver_lost: true,
            ..healthy
        };
        // The driver first, whatever happened to the socket.
        for now in [Some(ours), Some(other), None] {
            assert_eq!(next_step(&lost, now), Step::AskDriver);
        }
    }

    #[test]
    fn driver_answers() {
        assert_eq!(
            after_driver_answer::<()>("d", Ok("d".into())),
            DriverCheck::Back
        );
        assert_eq!(
            after_driver_answer::<()>("d", Ok("e".into())),
            DriverCheck::Renamed("e".into())
        );
        assert_eq!(after_driver_answer("d", Err(())), DriverCheck::StillAway);
    }

    #[test]
    fn silence_is_reported_once_and_recovery_timed() {
        let t0 = Instant::now();
        let mut c = Callbacks::new(t0);
        assert_eq!(c.overdue(t0 + Duration::from_secs(29)), None);
        assert_eq!(
            c.overdue(t0 + CALLBACK_WARNING_AFTER),
            Some(Silence::NoGetInfo)
        );
        assert_eq!(c.overdue(t0 + Duration::from_secs(90)), None);
        c.on_get_info();
        assert_eq!(
            c.on_registered(t0 + Duration::from_secs(95)),
            Some(Duration::from_secs(95))
        );
        assert!(c.registered());
        assert_eq!(c.on_registered(t0 + Duration::from_secs(99)), None);

        let mut c = Callbacks::new(t0);
        c.on_get_info();
        assert_eq!(
            c.overdue(t0 + Duration::from_secs(31)),
            Some(Silence::NoStatus)
        );

        let mut c = Callbacks::new(t0);
        assert_eq!(c.on_registered(t0 + Duration::from_secs(1)), None);
        assert_eq!(c.overdue(t0 + Duration::from_secs(60)), None);
    }
}
