//! A subscriber's inbox: a bounded queue that the publisher pushes into
//! without ever waiting, and that the subscriber drains most urgent class
//! first. When it is full, the overflow policy decides what is lost, every
//! loss is counted, and the count of events missed since the last take is
//! handed to the consumer (WatchEvents turns it into a marker).

use std::{
    collections::VecDeque,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
};

use tokio::sync::Notify;

use super::{Event, TopicClass};

/// What a full inbox gives up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Overflow {
    /// Evict the oldest queued event of the least urgent class that is not
    /// more urgent than the newcomer; drop the newcomer only when everything
    /// queued is more urgent. Keeps a subscriber current.
    #[default]
    DropOldest,
    /// Keep what is queued; drop the newcomer, unless a less urgent event can
    /// make room.
    DropNewest,
}

/// What happened to a pushed event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pushed {
    /// Queued, nothing lost.
    Queued,
    /// Queued, and an older event was evicted to make room.
    Evicted,
    /// Not queued.
    Dropped,
    /// The inbox is closed.
    Closed,
}

/// What a take returns.
#[derive(Clone, Debug)]
pub enum Item {
    /// The consumer missed this many events since its last take.
    Missed(u64),
    /// The next event.
    Event(Arc<Event>),
}

#[derive(Debug, Default)]
struct Lanes {
    /// One queue per class, indexed by `TopicClass as usize`.
    lanes: [VecDeque<Arc<Event>>; 3],
    /// Events queued in all lanes.
    len: usize,
    /// Events lost since the consumer last took one.
    missed: u64,
    /// The consumer is parked and must be woken; pushes into an inbox whose
    /// consumer is busy skip the wake-up, which is most of the cost under load.
    waiting: bool,
    /// Events ever queued (counted under the lock the push holds anyway).
    accepted: u64,
    /// Events ever lost: refused, or evicted by newer ones.
    lost: u64,
}

/// A bounded, class-ordered queue with one consumer.
#[derive(Debug)]
pub struct Inbox {
    lanes: Mutex<Lanes>,
    notify: Notify,
    capacity: usize,
    overflow: Overflow,
    closed: AtomicBool,
}

impl Inbox {
    /// An empty inbox holding at most `capacity` events.
    pub fn new(capacity: usize, overflow: Overflow) -> Self {
        Self {
            lanes: Mutex::default(),
            notify: Notify::new(),
            capacity: capacity.max(1),
            overflow,
            closed: AtomicBool::new(false),
        }
    }

    /// Queues `event` without waiting.
    pub fn push(&self, event: Arc<Event>) -> Pushed {
        if self.closed.load(Ordering::Acquire) {
            return Pushed::Closed;
        }
        let class = event.topic.class();
        let (outcome, wake) = {
            let mut q = self.lanes.lock().expect("inbox lock");
            let outcome = if q.len < self.capacity {
                Pushed::Queued
            } else {
                // The least urgent non-empty lane no more urgent than the newcomer.
                let victim = [TopicClass::Bulk, TopicClass::Normal, TopicClass::Critical]
                    .into_iter()
                    .filter(|c| *c <= class)
                    .find(|c| !q.lanes[*c as usize].is_empty());
                match (victim, self.overflow) {
                    (Some(lane), Overflow::DropOldest) => {
                        q.lanes[lane as usize].pop_front();
                        Pushed::Evicted
                    }
                    (Some(lane), Overflow::DropNewest) if lane < class => {
                        q.lanes[lane as usize].pop_front();
                        Pushed::Evicted
                    }
                    _ => Pushed::Dropped,
                }
            };
            match outcome {
                Pushed::Queued => {
                    q.lanes[class as usize].push_back(event);
                    q.len += 1;
                    q.accepted += 1;
                }
                Pushed::Evicted => {
                    q.lanes[class as usize].push_back(event);
                    q.missed += 1;
                    q.accepted += 1;
                    q.lost += 1;
                }
                _ => {
                    q.missed += 1;
                    q.lost += 1;
                }
            }
            (outcome, std::mem::take(&mut q.waiting))
        };
        if wake {
            self.notify.notify_one();
        }
        outcome
    }

    /// Takes the missed count, if any, else the most urgent queued event;
    /// `None` when nothing is queued.
    pub fn try_take(&self) -> Option<Item> {
        let mut one = Vec::with_capacity(1);
        fill(&mut self.lanes.lock().expect("inbox lock"), &mut one, 1);
        one.pop()
    }

    /// Waits for the next item; `None` once the inbox is closed and drained.
    pub async fn take(&self) -> Option<Item> {
        let mut batch = Vec::with_capacity(1);
        self.take_batch(&mut batch, 1).await;
        batch.pop()
    }

    /// Waits until something is queued, then moves up to `max` items into
    /// `batch` under one lock (the missed count first, then most urgent
    /// first). Leaves `batch` empty once the inbox is closed and drained.
    /// A small `max` bounds how long a critical event that arrives meanwhile
    /// waits behind the batch.
    pub async fn take_batch(&self, batch: &mut Vec<Item>, max: usize) {
        loop {
            {
                let mut q = self.lanes.lock().expect("inbox lock");
                fill(&mut q, batch, max);
                if !batch.is_empty() || self.closed.load(Ordering::Acquire) {
                    return;
                }
                // Parked: the next push wakes us (a wake-up sent between
                // here and the await is kept by Notify as a permit).
                q.waiting = true;
            }
            self.notify.notified().await;
        }
    }

    /// Events queued now.
    pub fn depth(&self) -> usize {
        self.lanes.lock().expect("inbox lock").len
    }

    /// Events ever queued, and events ever lost (refused or evicted).
    pub fn totals(&self) -> (u64, u64) {
        let q = self.lanes.lock().expect("inbox lock");
        (q.accepted, q.lost)
    }

    /// Refuses further events and wakes the consumer, which drains what is
    /// queued and then gets `None`.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.notify.notify_one();
    }
}

/// Moves up to `max` items from `q` into `batch`: the missed count first
/// (it counts as one), then events, most urgent class first.
fn fill(q: &mut Lanes, batch: &mut Vec<Item>, max: usize) {
    if q.missed > 0 && batch.len() < max {
        batch.push(Item::Missed(std::mem::take(&mut q.missed)));
    }
    for class in TopicClass::BY_URGENCY {
        while batch.len() < max {
            let Some(event) = q.lanes[class as usize].pop_front() else {
                break;
            };
            q.len -= 1;
            batch.push(Item::Event(event));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::Topic;

    fn event(seq: u64, topic: Topic) -> Arc<Event> {
        Arc::new(Event::test(seq, topic))
    }

    fn seqs(inbox: &Inbox) -> Vec<String> {
        std::iter::from_fn(|| inbox.try_take())
            .map(|item| match item {
                Item::Missed(n) => format!("missed {n}"),
                Item::Event(e) => e.seq.to_string(),
            })
            .collect()
    }

    #[test]
    fn drains_most_urgent_class_first_then_in_order() {
        let inbox = Inbox::new(10, Overflow::DropOldest);
        inbox.push(event(1, Topic::MusicPlaybackProgress));
        inbox.push(event(2, Topic::MusicPlaybackStarted));
        inbox.push(event(3, Topic::ModeChanged));
        inbox.push(event(4, Topic::MusicVolumeChanged));
        assert_eq!(seqs(&inbox), ["3", "2", "4", "1"]);
    }

    #[test]
    fn drop_oldest_evicts_the_least_urgent_and_counts_it() {
        let inbox = Inbox::new(2, Overflow::DropOldest);
        assert_eq!(
            inbox.push(event(1, Topic::MusicPlaybackProgress)),
            Pushed::Queued
        );
        assert_eq!(inbox.push(event(2, Topic::ModeChanged)), Pushed::Queued);
        // A normal event evicts the bulk one, not the critical one.
        assert_eq!(
            inbox.push(event(3, Topic::MusicVolumeChanged)),
            Pushed::Evicted
        );
        // A bulk event cannot evict anything more urgent.
        assert_eq!(
            inbox.push(event(4, Topic::MusicPlaybackProgress)),
            Pushed::Dropped
        );
        // Oldest normal goes for a newer normal.
        assert_eq!(
            inbox.push(event(5, Topic::MusicVolumeChanged)),
            Pushed::Evicted
        );
        assert_eq!(seqs(&inbox), ["missed 3", "2", "5"]);
    }

    #[test]
    fn drop_newest_keeps_what_is_queued() {
        let inbox = Inbox::new(2, Overflow::DropNewest);
        inbox.push(event(1, Topic::MusicVolumeChanged));
        inbox.push(event(2, Topic::MusicVolumeChanged));
        assert_eq!(
            inbox.push(event(3, Topic::MusicVolumeChanged)),
            Pushed::Dropped
        );
        // ...but a more urgent newcomer still makes room.
        assert_eq!(inbox.push(event(4, Topic::ModeChanged)), Pushed::Evicted);
        assert_eq!(seqs(&inbox), ["missed 2", "4", "2"]);
    }

    #[tokio::test]
    async fn closing_drains_then_ends() {
        let inbox = Arc::new(Inbox::new(4, Overflow::DropOldest));
        inbox.push(event(1, Topic::ModeChanged));
        inbox.close();
        assert_eq!(inbox.push(event(2, Topic::ModeChanged)), Pushed::Closed);
        assert!(matches!(inbox.take().await, Some(Item::Event(e)) if e.seq == 1));
        assert!(inbox.take().await.is_none());
    }

    #[tokio::test]
    async fn a_waiting_consumer_is_woken_by_a_push() {
        let inbox = Arc::new(Inbox::new(4, Overflow::DropOldest));
        let consumer = tokio::spawn({
            let inbox = inbox.clone();
            async move { inbox.take().await }
        });
        tokio::task::yield_now().await;
        inbox.push(event(7, Topic::ModeChanged));
        assert!(matches!(consumer.await.unwrap(), Some(Item::Event(e)) if e.seq == 7));
    }
}
