//! `--dedup`: jobs whose requests are identical are called once. The first
//! job of a request (its leader) runs; the others wait for its final
//! answer, or, arriving later, get a copy of it at once. An answer is kept
//! only while jobs of its request are still to come: the check pass
//! counted them.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;

use callpool_protocol::JobError;

use super::Core;
use super::worker::Pending;
use crate::job::Job;
use crate::records::AttemptRecord;

/// A job's final answer, as its result file gets it.
#[derive(Debug, Clone)]
pub(crate) struct Answer {
    pub ok: bool,
    pub status: Option<u16>,
    pub response: Option<callpool_protocol::HttpResponse>,
    pub value: Option<Box<serde_json::value::RawValue>>,
    pub error: Option<JobError>,
    pub history: Vec<AttemptRecord>,
}

/// The requests made more than once in this run, and where each stands.
pub(crate) struct Dedup {
    /// Jobs of each repeated request (by fingerprint hash) not seen yet.
    to_come: HashMap<u64, u32>,
    hasher: RandomState,
    groups: HashMap<String, Group>,
}

enum Group {
    /// Its leader is being called; these jobs wait for its answer.
    Calling { waiting: Vec<Pending> },
    /// Its leader is done; jobs still to come get a copy.
    Answered { leader: String, answer: Arc<Answer> },
}

impl Dedup {
    pub(crate) fn new(to_come: HashMap<u64, u32>, hasher: RandomState) -> Self {
        Dedup {
            to_come,
            hasher,
            groups: HashMap::new(),
        }
    }

    /// Counts a job of `fingerprint` as seen: `None` when its request is
    /// made only once (no group needed), else whether it was the last job
    /// of its request to come.
    fn seen(&mut self, fingerprint: &str) -> Option<bool> {
        let h = self.hasher.hash_one(fingerprint);
        let left = self.to_come.get_mut(&h)?;
        *left -= 1;
        let last = *left == 0;
        if last {
            self.to_come.remove(&h);
        }
        Some(last)
    }

    fn more_to_come(&self, fingerprint: &str) -> bool {
        self.to_come
            .contains_key(&self.hasher.hash_one(fingerprint))
    }
}

impl Core {
    /// A job from the source: the leader of its request (or alone) goes on
    /// to be sent; another waits for its leader, or is answered now.
    pub(super) fn admit(&mut self, pending: Pending) -> Option<Pending> {
        let Some(dedup) = self.dedup.as_mut() else {
            return Some(pending);
        };
        let Some(last) = dedup.seen(&pending.job.fingerprint) else {
            return Some(pending);
        };
        let fp = pending.job.fingerprint.clone();
        match dedup.groups.get_mut(&fp) {
            None => {
                dedup.groups.insert(
                    fp,
                    Group::Calling {
                        waiting: Vec::new(),
                    },
                );
                Some(pending)
            }
            Some(Group::Calling { waiting }) => {
                waiting.push(pending);
                None
            }
            Some(Group::Answered { leader, answer }) => {
                let (leader, answer) = (leader.clone(), answer.clone());
                if last {
                    dedup.groups.remove(&fp);
                }
                self.summary.dedup_saved += 1;
                self.finish(pending.job, (*answer).clone(), Some(leader));
                None
            }
        }
    }

    /// A job is done: the jobs waiting for its request's answer get it, and
    /// it is kept for those still to come.
    pub(super) fn answer_followers(&mut self, job: &Job, answer: &Answer) {
        let Some(dedup) = self.dedup.as_mut() else {
            return;
        };
        let Some(Group::Calling { .. }) = dedup.groups.get(&job.fingerprint) else {
            return;
        };
        let more = dedup.more_to_come(&job.fingerprint);
        let group = if more {
            dedup.groups.insert(
                job.fingerprint.clone(),
                Group::Answered {
                    leader: job.id.clone(),
                    answer: Arc::new(answer.clone()),
                },
            )
        } else {
            dedup.groups.remove(&job.fingerprint)
        };
        if let Some(Group::Calling { waiting }) = group {
            for follower in waiting {
                self.summary.dedup_saved += 1;
                self.finish(follower.job, answer.clone(), Some(job.id.clone()));
            }
        }
    }
}
