//! The shape every part of the droid with a life of its own shares (audio,
//! eyes; speech, plans and servos next): a *handle* that commands and RPCs
//! hold, and an *actor* that owns the hardware and the state and serves one
//! request after another.
//!
//! [`Handle`] is the outer shape, written once: the running slot that start,
//! stop and `reset` (stop, then start) fill and empty; a bounded inbox that
//! refuses at once when full rather than making a caller wait; requests that
//! carry a oneshot for the reply and the command's correlation id
//! ([`Envelope`]); the status follow into the lifecycle; the mode hook
//! ([`mode_hook`]).
//!
//! Only the shape is shared, not where the actor runs: an async actor is a
//! tokio task reading a bounded channel ([`Handle::spawn_task`]); blocking
//! hardware I/O stays on an OS thread of its own that reads a std channel,
//! with requests counted until answered against a cap
//! ([`Handle::spawn_thread`]).

use std::{
    fmt,
    future::Future,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
        mpsc as std_mpsc,
    },
    time::Duration,
};

use tokio::sync::{mpsc, oneshot, watch};
use tracing::warn;

use crate::{
    bus,
    lifecycle::{ServiceStatus, StatusHandle},
    modes::{Mode, ModeHook},
};

/// Longest [`Handle::stop`] waits for a task to end before aborting it (and
/// for a thread before warning that it is slow to stop).
pub const STOP_WAIT: Duration = Duration::from_secs(5);

/// A request on its way to an actor: what is asked, where the answer goes,
/// and the correlation id of the command that asked, so that the events it
/// causes carry it.
#[derive(Debug)]
pub struct Envelope<R, T> {
    /// What is asked.
    pub request: R,
    /// Where the answer goes; dropping it tells the caller the actor stopped.
    pub reply: oneshot::Sender<T>,
    /// The asking command's correlation id, if any.
    pub correlation: Option<Arc<str>>,
}

/// Who answers, in messages for people: "the eyes are …", "the audio is …".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Subject {
    /// E.g. `the eyes`.
    name: &'static str,
    /// Whether the name takes "are".
    plural: bool,
}

impl Subject {
    /// A subject that takes "is" (`the audio`).
    pub const fn singular(name: &'static str) -> Self {
        Self {
            name,
            plural: false,
        }
    }

    /// A subject that takes "are" (`the eyes`).
    pub const fn plural(name: &'static str) -> Self {
        Self { name, plural: true }
    }

    /// The name with its verb: `the eyes are`.
    fn is(self) -> String {
        let verb = if self.plural { "are" } else { "is" };
        format!("{} {verb}", self.name)
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

/// Why a request did not reach an actor, or got no answer; each subsystem's
/// error enum takes it in as "unavailable".
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ActorError {
    /// Nothing runs: stopped, or between the stop and the start of a reset.
    #[error(
        "{} not running (stopped, or restarting after 'reset'); try again in a moment",
        .0.is()
    )]
    NotRunning(Subject),
    /// The inbox is full.
    #[error("{} busy: {waiting} requests already waiting; try again", subject.is())]
    Busy {
        /// Who refused.
        subject: Subject,
        /// How many requests wait.
        waiting: usize,
    },
    /// The actor ended before it answered.
    #[error("{0} stopped before answering; try again in a moment")]
    Stopped(Subject),
}

/// The sending side of a running actor's inbox.
enum Inbox<M> {
    /// A task's bounded channel: a full one refuses.
    Task(mpsc::Sender<M>),
    /// A thread's channel. It is unbounded (the actor's own helpers feed it
    /// too), so requests are counted from sending until answered, against
    /// `cap`.
    Thread {
        /// The channel.
        tx: std_mpsc::Sender<M>,
        /// Requests that may be outstanding at once.
        cap: usize,
    },
}

impl<M> Clone for Inbox<M> {
    fn clone(&self) -> Self {
        match self {
            Inbox::Task(tx) => Inbox::Task(tx.clone()),
            Inbox::Thread { tx, cap } => Inbox::Thread {
                tx: tx.clone(),
                cap: *cap,
            },
        }
    }
}

/// What a running actor is, to wait for it.
enum Worker {
    Task(tokio::task::JoinHandle<()>),
    Thread(std::thread::JoinHandle<()>),
}

impl Worker {
    /// Waits for the actor to end: a task at most [`STOP_WAIT`], then it is
    /// aborted; a thread until it has ended.
    async fn wait(self, subject: Subject) {
        match self {
            Worker::Task(mut task) => {
                let ended = tokio::time::timeout(STOP_WAIT, &mut task).await.is_ok();
                if !ended {
                    warn!(actor = %subject, "the actor of {subject} did not stop within {STOP_WAIT:?}; aborting it");
                    task.abort();
                    let _ = task.await;
                }
            }
            // A thread cannot be cut off, and it may hold hardware (the
            // serial port) that the next start opens again: it is waited for
            // to the end, with a warning when that takes long.
            Worker::Thread(thread) => {
                let mut joined = tokio::task::spawn_blocking(move || thread.join());
                if tokio::time::timeout(STOP_WAIT, &mut joined).await.is_err() {
                    warn!(actor = %subject, "the thread of {subject} did not stop within {STOP_WAIT:?}; still waiting for it");
                    let _ = joined.await;
                }
            }
        }
    }
}

/// A started actor: the running slot's content.
struct Running<M, X> {
    inbox: Inbox<M>,
    /// Sent when the slot is emptied, to an actor that holds a sender of its
    /// own inbox and so never sees it close.
    stop: Option<M>,
    /// Taken by [`Handle::stop`] to wait for the actor.
    worker: Option<Worker>,
    /// The status follow, ended with the actor.
    watcher: Option<tokio::task::JoinHandle<()>>,
    /// What the running actor lends its handle (the audio's clock).
    extra: X,
}

impl<M, X> Drop for Running<M, X> {
    /// Tells the actor to stop: dropping the inbox closes a task's channel;
    /// a thread is sent its stop message.
    fn drop(&mut self) {
        if let (Some(stop), Inbox::Thread { tx, .. }) = (self.stop.take(), &self.inbox) {
            let _ = tx.send(stop);
        }
        if let Some(watcher) = &self.watcher {
            watcher.abort();
        }
    }
}

/// A subsystem's handle on its actor: cheap to clone, every clone sees the
/// same running slot. `M` is what the actor's inbox carries; `X` is what a
/// running actor lends the handle.
pub struct Handle<M, X = ()> {
    shared: Arc<Shared<M, X>>,
}

impl<M, X> Clone for Handle<M, X> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

struct Shared<M, X> {
    /// Names the subsystem in refusals.
    subject: Subject,
    /// The running actor, if any.
    running: Mutex<Option<Running<M, X>>>,
    /// Requests sent to a thread and not answered yet.
    outstanding: AtomicUsize,
}

impl<M: Send + 'static, X> Handle<M, X> {
    /// A handle with nothing running yet.
    pub fn new(subject: Subject) -> Self {
        Self {
            shared: Arc::new(Shared {
                subject,
                running: Mutex::new(None),
                outstanding: AtomicUsize::new(0),
            }),
        }
    }

    /// Starts the actor `run` as a tokio task reading a channel of
    /// `capacity` requests; a request that finds it full is refused. The
    /// actor ends when the channel closes, which [`stop`](Self::stop) does.
    pub fn spawn_task<F>(&self, capacity: usize, extra: X, run: impl FnOnce(mpsc::Receiver<M>) -> F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let (tx, rx) = mpsc::channel(capacity);
        let task = tokio::spawn(run(rx));
        self.install(Running {
            inbox: Inbox::Task(tx),
            stop: None,
            worker: Some(Worker::Task(task)),
            watcher: None,
            extra,
        });
    }

    /// Starts the actor `run` on an OS thread named `thread`, for blocking
    /// I/O. It gets its inbox and a sender of it (for the helper threads
    /// that feed it), and must end when it receives `stop`, which it is sent
    /// when the running slot is emptied or dropped. At most `cap` requests
    /// are outstanding at once, from sending until answered; more are
    /// refused.
    pub fn spawn_thread(
        &self,
        thread: &str,
        cap: usize,
        stop: M,
        extra: X,
        run: impl FnOnce(std_mpsc::Receiver<M>, std_mpsc::Sender<M>) + Send + 'static,
    ) -> Result<(), String> {
        let (tx, rx) = std_mpsc::channel();
        let outbox = tx.clone();
        let worker = std::thread::Builder::new()
            .name(thread.into())
            .spawn(move || run(rx, outbox))
            .map_err(|e| format!("cannot start a thread for {}: {e}", self.shared.subject))?;
        self.install(Running {
            inbox: Inbox::Thread { tx, cap },
            stop: Some(stop),
            worker: Some(Worker::Thread(worker)),
            watcher: None,
            extra,
        });
        Ok(())
    }

    fn install(&self, running: Running<M, X>) {
        let previous = self.lock().replace(running);
        drop(previous);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Running<M, X>>> {
        self.shared.running.lock().expect("actor slot lock")
    }

    /// Reports the status that the actor's `state` stands for, and follows
    /// it until the actor stops ([`StatusHandle::follow`]).
    pub async fn follow<T: Send + Sync + 'static>(
        &self,
        status: StatusHandle,
        state: watch::Receiver<T>,
        status_of: fn(&T) -> (ServiceStatus, String),
    ) {
        let watcher = status.follow(state, status_of).await;
        match self.lock().as_mut() {
            Some(running) => {
                if let Some(previous) = running.watcher.replace(watcher) {
                    previous.abort();
                }
            }
            // Stopped meanwhile.
            None => watcher.abort(),
        }
    }

    /// Whether an actor runs.
    pub fn is_running(&self) -> bool {
        self.lock().is_some()
    }

    /// `f` of what the running actor lends its handle; `None` while stopped.
    pub fn with_running<R>(&self, f: impl FnOnce(&X) -> R) -> Option<R> {
        self.lock().as_ref().map(|running| f(&running.extra))
    }

    /// Ends the actor and waits for it: a task still running after
    /// [`STOP_WAIT`] is aborted (so that it lets go of its device before the
    /// next start opens it); a thread, which cannot be, is waited for until
    /// it has ended, as the eyes always were.
    /// Nothing happens when nothing runs.
    pub async fn stop(&self) {
        let Some(mut running) = self.lock().take() else {
            return;
        };
        let worker = running.worker.take();
        drop(running);
        if let Some(worker) = worker {
            worker.wait(self.shared.subject).await;
        }
    }

    /// Sends the actor the message that `message` makes from a reply
    /// channel and the calling command's correlation id, and waits for the
    /// answer. Refuses at once when nothing runs or the inbox is full.
    pub async fn call<T>(
        &self,
        message: impl FnOnce(oneshot::Sender<T>, Option<Arc<str>>) -> M,
    ) -> Result<T, ActorError> {
        let subject = self.shared.subject;
        let inbox = self
            .lock()
            .as_ref()
            .map(|running| running.inbox.clone())
            .ok_or(ActorError::NotRunning(subject))?;
        let (reply, answer) = oneshot::channel();
        // Counts this request until its answer, wherever it waits.
        let _outstanding = match &inbox {
            Inbox::Thread { cap, .. } => Some(
                Outstanding::take(&self.shared.outstanding, *cap).ok_or(ActorError::Busy {
                    subject,
                    waiting: *cap,
                })?,
            ),
            Inbox::Task(_) => None,
        };
        let message = message(reply, bus::current_correlation());
        match inbox {
            Inbox::Task(tx) => tx.try_send(message).map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => ActorError::Busy {
                    subject,
                    waiting: tx.max_capacity(),
                },
                mpsc::error::TrySendError::Closed(_) => ActorError::Stopped(subject),
            })?,
            Inbox::Thread { tx, .. } => {
                tx.send(message).map_err(|_| ActorError::Stopped(subject))?
            }
        }
        answer.await.map_err(|_| ActorError::Stopped(subject))
    }

    /// [`call`](Self::call) for an actor whose inbox takes [`Envelope`]s.
    pub async fn ask<R, T>(&self, request: R) -> Result<T, ActorError>
    where
        M: From<Envelope<R, T>>,
    {
        self.call(|reply, correlation| {
            Envelope {
                request,
                reply,
                correlation,
            }
            .into()
        })
        .await
    }
}

/// One request in flight to a thread, counted until dropped.
struct Outstanding<'a>(&'a AtomicUsize);

impl<'a> Outstanding<'a> {
    fn take(count: &'a AtomicUsize, cap: usize) -> Option<Self> {
        if count.fetch_add(1, Ordering::AcqRel) >= cap {
            count.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Self(count))
    }
}

impl Drop for Outstanding<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A mode hook that runs `on_change(handle, new_mode)` on every change. It
/// never fails the change: what goes wrong is the subsystem's to log (a lost
/// board shows the mode's pattern when it comes back).
pub fn mode_hook<H, F, Fut>(handle: &H, on_change: F) -> ModeHook
where
    H: Clone + Send + Sync + 'static,
    F: Fn(H, Mode) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let handle = handle.clone();
    Arc::new(move |_, to| {
        let followed = on_change(handle.clone(), to);
        Box::pin(async move {
            followed.await;
            Ok(())
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUBJECT: Subject = Subject::plural("the probes");

    /// Answers each number with itself and the correlation id it came with.
    type Echo = Envelope<u32, (u32, Option<Arc<str>>)>;

    /// What the thread actor's inbox carries.
    enum Msg {
        Request(Echo),
        Stop,
    }

    impl From<Echo> for Msg {
        fn from(envelope: Echo) -> Self {
            Msg::Request(envelope)
        }
    }

    fn echo_task() -> Handle<Echo, u32> {
        let handle: Handle<Echo, u32> = Handle::new(SUBJECT);
        handle.spawn_task(4, 7, |mut rx| async move {
            while let Some(e) = rx.recv().await {
                let _ = e.reply.send((e.request, e.correlation));
            }
        });
        handle
    }

    /// A thread actor that answers when `answer` is true and otherwise keeps
    /// the replies unanswered; it says on `ended` when it stops.
    fn thread_actor(answer: bool, ended: std_mpsc::Sender<()>) -> Handle<Msg> {
        let handle = Handle::new(SUBJECT);
        handle
            .spawn_thread("probe", 2, Msg::Stop, (), move |inbox, _outbox| {
                let mut kept = Vec::new();
                while let Ok(Msg::Request(e)) = inbox.recv() {
                    if answer {
                        let _ = e.reply.send((e.request, e.correlation));
                    } else {
                        kept.push(e);
                    }
                }
                let _ = ended.send(());
            })
            .unwrap();
        handle
    }

    #[tokio::test]
    async fn a_request_carries_the_commands_correlation_id() {
        let handle = echo_task();
        let (n, correlation) = bus::with_correlation("c-7".into(), handle.ask(3))
            .await
            .unwrap();
        assert_eq!((n, correlation.as_deref()), (3, Some("c-7")));
        assert_eq!(handle.ask(4).await.unwrap(), (4, None));
        assert_eq!(handle.with_running(|x| *x), Some(7));
        handle.stop().await;
    }

    #[tokio::test]
    async fn a_full_task_inbox_refuses_at_once() {
        let handle: Handle<Echo> = Handle::new(SUBJECT);
        // An actor that never reads: the inbox fills.
        handle.spawn_task(1, (), |rx| async move {
            let _rx = rx;
            std::future::pending::<()>().await
        });
        let waiting = tokio::time::timeout(Duration::from_millis(20), handle.ask(1)).await;
        assert!(waiting.is_err(), "the first request waits in the inbox");
        let refused = tokio::time::timeout(Duration::from_secs(5), handle.ask(2))
            .await
            .expect("refused at once");
        let err = refused.unwrap_err();
        assert_eq!(
            err,
            ActorError::Busy {
                subject: SUBJECT,
                waiting: 1
            }
        );
        assert_eq!(
            err.to_string(),
            "the probes are busy: 1 requests already waiting; try again"
        );
    }

    #[tokio::test]
    async fn a_thread_counts_requests_until_answered() {
        let (ended, _) = std_mpsc::channel();
        let handle = thread_actor(false, ended);
        // The thread takes both from its inbox but answers neither.
        let first = tokio::spawn({
            let handle = handle.clone();
            async move { handle.ask::<u32, (u32, Option<Arc<str>>)>(1).await }
        });
        let second = tokio::spawn({
            let handle = handle.clone();
            async move { handle.ask::<u32, (u32, Option<Arc<str>>)>(2).await }
        });
        while handle.shared.outstanding.load(Ordering::Acquire) < 2 {
            tokio::task::yield_now().await;
        }
        let err = handle
            .ask::<u32, (u32, Option<Arc<str>>)>(3)
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "the probes are busy: 2 requests already waiting; try again"
        );
        // Stopping drops the kept replies: the callers hear it.
        handle.stop().await;
        for call in [first, second] {
            assert_eq!(call.await.unwrap(), Err(ActorError::Stopped(SUBJECT)));
        }
        assert_eq!(handle.shared.outstanding.load(Ordering::Acquire), 0);
    }

    #[tokio::test]
    async fn a_stopped_handle_refuses_and_a_restart_serves_again() {
        let handle = echo_task();
        handle.stop().await;
        assert!(!handle.is_running());
        let err = handle.ask(1).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "the probes are not running (stopped, or restarting after 'reset'); try again in a moment"
        );
        assert_eq!(handle.with_running(|x| *x), None);
        // Restart: stop (done), then start again.
        handle.spawn_task(4, 8, |mut rx| async move {
            while let Some(e) = rx.recv().await {
                let _ = e.reply.send((e.request * 2, e.correlation));
            }
        });
        assert_eq!(handle.ask(2).await.unwrap(), (4, None));
        assert_eq!(
            Subject::singular("the audio").is(),
            "the audio is",
            "and the verb fits"
        );
    }

    #[tokio::test]
    async fn a_thread_is_told_to_stop_and_waited_for() {
        let (ended, end) = std_mpsc::channel();
        let handle = thread_actor(true, ended);
        assert_eq!(handle.ask(5).await.unwrap(), (5, None));
        handle.stop().await;
        assert!(end.try_recv().is_ok(), "stop waited for the thread");
        assert!(matches!(
            handle.ask::<u32, (u32, Option<Arc<str>>)>(1).await,
            Err(ActorError::NotRunning(_))
        ));
    }

    #[tokio::test]
    async fn dropping_the_last_handle_tells_a_thread_to_stop() {
        let (ended, end) = std_mpsc::channel();
        let handle = thread_actor(true, ended);
        drop(handle);
        end.recv_timeout(Duration::from_secs(5))
            .expect("the thread stopped");
    }

    #[tokio::test(start_paused = true)]
    async fn a_task_that_does_not_end_is_aborted_after_the_bound() {
        let handle: Handle<Echo> = Handle::new(SUBJECT);
        handle.spawn_task(1, (), |rx| async move {
            // Ignores its inbox closing.
            let _rx = rx;
            std::future::pending::<()>().await
        });
        let started = tokio::time::Instant::now();
        handle.stop().await;
        assert_eq!(started.elapsed(), STOP_WAIT);
    }

    #[tokio::test]
    async fn the_mode_hook_hands_over_the_new_mode_and_never_fails() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let hook = mode_hook(&tx, |tx, to| async move {
            let _ = tx.send(to);
        });
        hook(Mode::Idle, Mode::Ambient).await.unwrap();
        assert_eq!(rx.recv().await, Some(Mode::Ambient));
    }
}
