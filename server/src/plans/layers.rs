//! Who runs: the layers' rules as a pure core. One plan runs per layer; a
//! new plan on a busy layer replaces it, queues after it, or is skipped if
//! that very plan already runs (Falcon Player's "if not running"); an
//! `override` plan cancels every lower layer, and plans started under it
//! wait, paused, until it ends; a `foreground` plan pauses the `ambient`
//! one, which resumes where it was when no foreground plan is left.
//! Decisions in, actions out; the plans subsystem carries them out.

use std::collections::VecDeque;

use super::model::Layer;

/// A plan's id.
pub type PlanId = String;

/// What to do when the layer is busy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum IfBusy {
    /// Cancel the plan there and start (the default).
    #[default]
    Replace,
    /// Start after it (and after those queued before).
    Queue,
    /// Do nothing if a plan of the same name runs there.
    SkipIfRunning,
}

/// What the subsystem must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Act {
    /// Start this plan now.
    Start(PlanId),
    /// Cancel this plan (with why: which plan pre-empted it).
    Cancel {
        /// The plan.
        plan: PlanId,
        /// The plan that caused it.
        by: PlanId,
    },
    /// Pause this plan.
    Pause {
        /// The plan.
        plan: PlanId,
        /// The plan that caused it.
        by: PlanId,
    },
    /// Resume this plan where it was.
    Resume(PlanId),
    /// The plan waits its turn.
    Queued {
        /// The plan.
        plan: PlanId,
        /// Its place (1: next).
        position: usize,
    },
    /// The plan was not started: one of its name already runs there.
    Skipped(PlanId),
}

#[derive(Clone, Debug, Default)]
struct Slot {
    /// The plan running (or paused) on the layer, and its name.
    running: Option<(PlanId, String)>,
    paused: bool,
    queue: VecDeque<(PlanId, String)>,
}

/// The three layers.
#[derive(Clone, Debug, Default)]
pub struct Layers {
    slots: [Slot; 3],
    /// Plans that may wait in all queues together.
    pub max_queued: usize,
}

fn index(layer: Layer) -> usize {
    match layer {
        Layer::Ambient => 0,
        Layer::Foreground => 1,
        Layer::Override => 2,
    }
}

/// Too many plans queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueFull(pub usize);

impl Layers {
    /// Empty layers holding at most `max_queued` waiting plans.
    pub fn new(max_queued: usize) -> Self {
        Self {
            slots: Default::default(),
            max_queued,
        }
    }

    /// The plan on `layer`, and whether it is paused.
    pub fn on(&self, layer: Layer) -> Option<(&str, bool)> {
        let slot = &self.slots[index(layer)];
        slot.running
            .as_ref()
            .map(|(id, _)| (id.as_str(), slot.paused))
    }

    /// An override plan starts: every plan on the lower layers, running or
    /// queued, is cancelled by it.
    fn clear_below_override(&mut self, by: &PlanId, acts: &mut Vec<Act>) {
        for lower in [Layer::Ambient, Layer::Foreground] {
            let slot = &mut self.slots[index(lower)];
            for (queued, _) in slot.queue.drain(..) {
                acts.push(Act::Cancel {
                    plan: queued,
                    by: by.clone(),
                });
            }
            if let Some((running, _)) = slot.running.take() {
                acts.push(Act::Cancel {
                    plan: running,
                    by: by.clone(),
                });
            }
            slot.paused = false;
        }
    }

    /// The plan running on the highest layer above `i`, if any: what holds
    /// a plan on layer `i`.
    fn holder_above(&self, i: usize) -> Option<PlanId> {
        self.slots[i + 1..]
            .iter()
            .rev()
            .find_map(|s| s.running.as_ref().map(|(id, _)| id.clone()))
    }

    /// A new plan asks to run on `layer`.
    ///
    /// # Errors
    ///
    /// [`QueueFull`] when it would queue and the queues are full.
    pub fn request(
        &mut self,
        id: PlanId,
        name: String,
        layer: Layer,
        if_busy: IfBusy,
    ) -> Result<Vec<Act>, QueueFull> {
        let mut acts = Vec::new();
        let i = index(layer);
        if let Some((running, running_name)) = &self.slots[i].running {
            match if_busy {
                IfBusy::SkipIfRunning if *running_name == name => {
                    return Ok(vec![Act::Skipped(id)]);
                }
                IfBusy::Queue => {
                    let queued: usize = self.slots.iter().map(|s| s.queue.len()).sum();
                    if queued >= self.max_queued {
                        return Err(QueueFull(self.max_queued));
                    }
                    self.slots[i].queue.push_back((id.clone(), name));
                    return Ok(vec![Act::Queued {
                        plan: id,
                        position: self.slots[i].queue.len(),
                    }]);
                }
                _ => acts.push(Act::Cancel {
                    plan: running.clone(),
                    by: id.clone(),
                }),
            }
        }
        // Override: every lower layer goes (queues too).
        if layer == Layer::Override {
            self.clear_below_override(&id, &mut acts);
        }
        // Foreground pauses ambient (override emptied both already).
        if layer == Layer::Foreground {
            let ambient = &mut self.slots[0];
            if let Some((running, _)) = &ambient.running
                && !ambient.paused
            {
                ambient.paused = true;
                acts.push(Act::Pause {
                    plan: running.clone(),
                    by: id.clone(),
                });
            }
        }
        // A plan under a higher one running (ambient under foreground or
        // override, foreground under override) starts paused.
        let holder = self.holder_above(i);
        let slot = &mut self.slots[i];
        slot.running = Some((id.clone(), name));
        slot.paused = holder.is_some();
        acts.push(Act::Start(id.clone()));
        if let Some(by) = holder {
            acts.push(Act::Pause { plan: id, by });
        }
        Ok(acts)
    }

    /// A plan ended (completed, failed or cancelled): the next queued on
    /// its layer starts; the highest plan below resumes when nothing runs
    /// above it any more (ambient when no foreground or override plan is
    /// left, foreground when the override ends).
    pub fn ended(&mut self, id: &str) -> Vec<Act> {
        let mut acts = Vec::new();
        let Some(i) = self
            .slots
            .iter()
            .position(|s| s.running.as_ref().is_some_and(|(r, _)| r == id))
        else {
            // A queued plan cancelled before it ran.
            for slot in &mut self.slots {
                slot.queue.retain(|(q, _)| q != id);
            }
            return acts;
        };
        self.slots[i].running = None;
        self.slots[i].paused = false;
        if let Some((next, name)) = self.slots[i].queue.pop_front() {
            // A queued override clears the layers below as it starts.
            if i == index(Layer::Override) {
                self.clear_below_override(&next, &mut acts);
            }
            let holder = self.holder_above(i);
            self.slots[i].running = Some((next.clone(), name));
            self.slots[i].paused = holder.is_some();
            acts.push(Act::Start(next.clone()));
            if let Some(by) = holder {
                acts.push(Act::Pause { plan: next, by });
            }
            if self.slots[i].running.is_some() {
                return acts;
            }
        }
        // The highest plan below that no longer has one running above it
        // resumes; those under it stay held by it.
        for j in (0..i).rev() {
            let slot = &self.slots[j];
            let Some((running, _)) = &slot.running else {
                continue;
            };
            if slot.paused && self.holder_above(j).is_none() {
                let running = running.clone();
                self.slots[j].paused = false;
                acts.push(Act::Resume(running));
            }
            break;
        }
        acts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> PlanId {
        s.to_string()
    }

    #[test]
    fn a_new_plan_replaces_the_one_on_its_layer() {
        let mut l = Layers::new(8);
        assert_eq!(
            l.request(id("a"), "show".into(), Layer::Foreground, IfBusy::Replace),
            Ok(vec![Act::Start(id("a"))])
        );
        assert_eq!(
            l.request(id("b"), "other".into(), Layer::Foreground, IfBusy::Replace),
            Ok(vec![
                Act::Cancel {
                    plan: id("a"),
                    by: id("b")
                },
                Act::Start(id("b"))
            ])
        );
        assert_eq!(l.on(Layer::Foreground), Some(("b", false)));
    }

    #[test]
    fn queued_plans_start_in_turn_and_the_queues_are_bounded() {
        let mut l = Layers::new(2);
        l.request(id("a"), "a".into(), Layer::Foreground, IfBusy::Replace)
            .unwrap();
        assert_eq!(
            l.request(id("b"), "b".into(), Layer::Foreground, IfBusy::Queue),
            Ok(vec![Act::Queued {
                plan: id("b"),
                position: 1
            }])
        );
        l.request(id("c"), "c".into(), Layer::Foreground, IfBusy::Queue)
            .unwrap();
        assert_eq!(
            l.request(id("d"), "d".into(), Layer::Foreground, IfBusy::Queue),
            Err(QueueFull(2))
        );
        assert_eq!(l.ended("a"), [Act::Start(id("b"))]);
        assert_eq!(l.ended("b"), [Act::Start(id("c"))]);
        assert_eq!(l.ended("c"), []);
    }

    #[test]
    fn a_plan_already_running_by_name_is_skipped_when_asked() {
        let mut l = Layers::new(8);
        l.request(id("a"), "idle-loop".into(), Layer::Ambient, IfBusy::Replace)
            .unwrap();
        assert_eq!(
            l.request(
                id("b"),
                "idle-loop".into(),
                Layer::Ambient,
                IfBusy::SkipIfRunning
            ),
            Ok(vec![Act::Skipped(id("b"))])
        );
        assert_eq!(l.on(Layer::Ambient), Some(("a", false)));
    }

    #[test]
    fn foreground_pauses_ambient_which_resumes_when_no_foreground_is_left() {
        let mut l = Layers::new(8);
        l.request(id("amb"), "amb".into(), Layer::Ambient, IfBusy::Replace)
            .unwrap();
        assert_eq!(
            l.request(id("fg"), "fg".into(), Layer::Foreground, IfBusy::Replace),
            Ok(vec![
                Act::Pause {
                    plan: id("amb"),
                    by: id("fg")
                },
                Act::Start(id("fg"))
            ])
        );
        l.request(id("fg2"), "fg2".into(), Layer::Foreground, IfBusy::Queue)
            .unwrap();
        // The next foreground plan runs first; ambient waits for both.
        assert_eq!(l.ended("fg"), [Act::Start(id("fg2"))]);
        assert_eq!(l.ended("fg2"), [Act::Resume(id("amb"))]);
        assert_eq!(l.on(Layer::Ambient), Some(("amb", false)));
    }

    #[test]
    fn an_ambient_plan_started_under_a_foreground_one_waits_paused() {
        let mut l = Layers::new(8);
        l.request(id("fg"), "fg".into(), Layer::Foreground, IfBusy::Replace)
            .unwrap();
        assert_eq!(
            l.request(id("amb"), "amb".into(), Layer::Ambient, IfBusy::Replace),
            Ok(vec![
                Act::Start(id("amb")),
                Act::Pause {
                    plan: id("amb"),
                    by: id("fg")
                }
            ])
        );
        assert_eq!(l.ended("fg"), [Act::Resume(id("amb"))]);
    }

    #[test]
    fn override_cancels_every_lower_layer_and_their_queues() {
        let mut l = Layers::new(8);
        l.request(id("amb"), "amb".into(), Layer::Ambient, IfBusy::Replace)
            .unwrap();
        l.request(id("fg"), "fg".into(), Layer::Foreground, IfBusy::Replace)
            .unwrap();
        l.request(id("fg2"), "fg2".into(), Layer::Foreground, IfBusy::Queue)
            .unwrap();
        assert_eq!(
            l.request(
                id("panic"),
                "panic".into(),
                Layer::Override,
                IfBusy::Replace
            ),
            Ok(vec![
                Act::Cancel {
                    plan: id("amb"),
                    by: id("panic")
                },
                Act::Cancel {
                    plan: id("fg2"),
                    by: id("panic")
                },
                Act::Cancel {
                    plan: id("fg"),
                    by: id("panic")
                },
                Act::Start(id("panic")),
            ])
        );
        assert_eq!(l.on(Layer::Ambient), None);
        assert_eq!(l.on(Layer::Foreground), None);
        // The cancelled plans' ends change nothing more.
        assert_eq!(l.ended("fg"), []);
    }

    #[test]
    fn plans_started_under_an_override_wait_and_the_highest_resumes_after_it() {
        let mut l = Layers::new(8);
        l.request(
            id("alarm"),
            "alarm".into(),
            Layer::Override,
            IfBusy::Replace,
        )
        .unwrap();
        assert_eq!(
            l.request(id("fg"), "fg".into(), Layer::Foreground, IfBusy::Replace),
            Ok(vec![
                Act::Start(id("fg")),
                Act::Pause {
                    plan: id("fg"),
                    by: id("alarm")
                }
            ])
        );
        assert_eq!(
            l.request(id("amb"), "amb".into(), Layer::Ambient, IfBusy::Replace),
            Ok(vec![
                Act::Start(id("amb")),
                Act::Pause {
                    plan: id("amb"),
                    by: id("alarm")
                }
            ])
        );
        // The override ends: the foreground plan carries on; ambient stays
        // held by it, and resumes when it ends.
        assert_eq!(l.ended("alarm"), [Act::Resume(id("fg"))]);
        assert_eq!(l.on(Layer::Ambient), Some(("amb", true)));
        assert_eq!(l.ended("fg"), [Act::Resume(id("amb"))]);
    }

    #[test]
    fn a_queued_override_clears_the_lower_layers_when_it_starts() {
        let mut l = Layers::new(8);
        l.request(
            id("alarm"),
            "alarm".into(),
            Layer::Override,
            IfBusy::Replace,
        )
        .unwrap();
        l.request(id("siren"), "siren".into(), Layer::Override, IfBusy::Queue)
            .unwrap();
        l.request(id("fg"), "fg".into(), Layer::Foreground, IfBusy::Replace)
            .unwrap();
        assert_eq!(
            l.ended("alarm"),
            [
                Act::Cancel {
                    plan: id("fg"),
                    by: id("siren")
                },
                Act::Start(id("siren")),
            ]
        );
        assert_eq!(l.on(Layer::Foreground), None);
    }
}
