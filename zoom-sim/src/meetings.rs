//! Meetings created through the simulated API (`POST /v2/users/{userId}/meetings`),
//! so that `GET /v2/users/{userId}/meetings` lists what a test created.
//!
//! Only the fields integrations commonly read are kept, in Zoom's shape. Storage is
//! bounded per user ([`MAX_MEETINGS_PER_USER`], oldest out); nothing else happens
//! to a meeting (no start, no end, no webhooks).

use std::collections::{HashMap, VecDeque};

use serde::Deserialize;
use serde_json::{json, Value};

use crate::clock::Millis;

/// Meetings kept per user; creating more drops the oldest.
pub const MAX_MEETINGS_PER_USER: usize = 1000;
/// Longest topic Zoom accepts.
const MAX_TOPIC_CHARS: usize = 200;

/// `POST /v2/users/{userId}/meetings` body (the fields zoom-sim keeps).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct NewMeeting {
    pub topic: Option<String>,
    /// 1 instant, 2 scheduled, 3 recurring without fixed time, 8 recurring with fixed time.
    #[serde(rename = "type")]
    pub kind: Option<u8>,
    pub start_time: Option<String>,
    pub duration: Option<u32>,
    pub timezone: Option<String>,
    pub agenda: Option<String>,
}

#[derive(Clone, Debug)]
struct Meeting {
    id: u64,
    uuid: String,
    host_id: String,
    host_email: String,
    topic: String,
    kind: u8,
    start_time: String,
    duration: u32,
    timezone: String,
    agenda: String,
    created_at: String,
}

impl Meeting {
    fn to_json(&self) -> Value {
        json!({
            "uuid": self.uuid,
            "id": self.id,
            "host_id": self.host_id,
            "host_email": self.host_email,
            "topic": self.topic,
            "type": self.kind,
            "status": "waiting",
            "start_time": self.start_time,
            "duration": self.duration,
            "timezone": self.timezone,
            "agenda": self.agenda,
            "created_at": self.created_at,
            "join_url": format!("https://zoom.us/j/{}", self.id),
        })
    }
}

/// All meetings, by host user id.
#[derive(Debug, Default)]
pub struct Meetings {
    by_user: HashMap<String, VecDeque<Meeting>>,
    next: u64,
}

fn iso(ms: Millis) -> String {
    crate::clock::rfc3339_secs(ms).unwrap_or_default()
}

impl Meetings {
    /// Creates a meeting for `host_id`; the answer is Zoom's meeting object.
    pub fn create(
        &mut self,
        host_id: &str,
        host_email: &str,
        req: NewMeeting,
        now: Millis,
    ) -> Result<Value, String> {
        let kind = req.kind.unwrap_or(2);
        if ![1, 2, 3, 8].contains(&kind) {
            return Err("type must be 1, 2, 3 or 8".to_owned());
        }
        let topic = req.topic.unwrap_or_else(|| "Zoom meeting".to_owned());
        if topic.chars().count() > MAX_TOPIC_CHARS {
            return Err(format!(
                "topic must be at most {MAX_TOPIC_CHARS} characters"
            ));
        }
        let start_time = match req.start_time {
            None => iso(now),
            Some(t) => {
                t.parse::<jiff::Timestamp>()
                    .map_err(|_| "start_time must be yyyy-MM-ddTHH:mm:ssZ".to_owned())?;
                t
            }
        };
        let agenda: String = req.agenda.unwrap_or_default().chars().take(2000).collect();
        let timezone: String = req
            .timezone
            .unwrap_or_else(|| "America/Los_Angeles".to_owned())
            .chars()
            .take(64)
            .collect();
        self.next += 1;
        // 11-digit ids like Zoom's.
        let id = 80_000_000_000 + self.next;
        let meeting = Meeting {
            id,
            uuid: crate::tokens::random_b64(16),
            host_id: host_id.to_owned(),
            host_email: host_email.to_owned(),
            topic,
            kind,
            start_time,
            duration: req.duration.unwrap_or(60).min(100_000),
            timezone,
            agenda,
            created_at: iso(now),
        };
        let body = meeting.to_json();
        let list = self.by_user.entry(host_id.to_owned()).or_default();
        if list.len() >= MAX_MEETINGS_PER_USER {
            list.pop_front();
        }
        list.push_back(meeting);
        Ok(body)
    }

    /// One page of a user's meetings, oldest first: Zoom's list shape. The page token
    /// is the offset of the next page.
    pub fn list(
        &self,
        host_id: &str,
        page_size: usize,
        page_token: Option<&str>,
    ) -> Result<Value, String> {
        let all = self.by_user.get(host_id);
        let total = all.map_or(0, VecDeque::len);
        let start = match page_token.filter(|t| !t.is_empty()) {
            None => 0,
            Some(t) => t
                .parse::<usize>()
                .ok()
                .filter(|n| *n <= total)
                .ok_or_else(|| "next_page_token is invalid or expired".to_owned())?,
        };
        let page: Vec<Value> = all
            .into_iter()
            .flatten()
            .skip(start)
            .take(page_size)
            .map(Meeting::to_json)
            .collect();
        let end = start + page.len();
        let next = if end < total {
            end.to_string()
        } else {
            String::new()
        };
        Ok(json!({
            "page_size": page_size,
            "total_records": total,
            "next_page_token": next,
            "meetings": page,
        }))
    }

    /// Zoom's meeting object, if `host_id` has that meeting.
    pub fn get(&self, host_id: &str, id: u64) -> Option<Value> {
        self.by_user
            .get(host_id)?
            .iter()
            .find(|m| m.id == id)
            .map(Meeting::to_json)
    }

    /// Deletes a meeting of `host_id`; false if there was none.
    pub fn delete(&mut self, host_id: &str, id: u64) -> bool {
        let Some(list) = self.by_user.get_mut(host_id) else {
            return false;
        };
        let before = list.len();
        list.retain(|m| m.id != id);
        before != list.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_list_page_get_delete() {
        let mut m = Meetings::default();
        for i in 0..3 {
            let created = m
                .create(
                    "U",
                    "u@example.com",
                    NewMeeting {
                        topic: Some(format!("t{i}")),
                        ..NewMeeting::default()
                    },
                    1_700_000_000_000,
                )
                .expect("valid");
            assert_eq!(created["type"], 2);
            assert_eq!(created["start_time"], "2023-11-14T22:13:20Z");
        }
        let page = m.list("U", 2, None).expect("list");
        assert_eq!(page["total_records"], 3);
        assert_eq!(page["meetings"].as_array().map(Vec::len), Some(2));
        assert_eq!(page["next_page_token"], "2");
        let rest = m.list("U", 2, Some("2")).expect("list");
        assert_eq!(rest["meetings"][0]["topic"], "t2");
        assert_eq!(rest["next_page_token"], "");
        assert!(m.list("U", 2, Some("9")).is_err());
        assert_eq!(
            m.list("nobody", 30, None).expect("empty")["total_records"],
            0
        );
        let id = page["meetings"][0]["id"].as_u64().expect("id");
        assert!(m.get("U", id).is_some());
        assert!(m.get("V", id).is_none());
        assert!(m.delete("U", id));
        assert!(!m.delete("U", id));
        for bad in [
            NewMeeting {
                kind: Some(4),
                ..NewMeeting::default()
            },
            NewMeeting {
                start_time: Some("tomorrow".to_owned()),
                ..NewMeeting::default()
            },
            NewMeeting {
                topic: Some("x".repeat(201)),
                ..NewMeeting::default()
            },
        ] {
            assert!(m.create("U", "u@example.com", bad, 0).is_err());
        }
    }

    #[test]
    fn start_time_is_an_rfc3339_timestamp() {
        let mut m = Meetings::default();
        let start = |t: &str| NewMeeting {
            start_time: Some(t.to_owned()),
            ..NewMeeting::default()
        };
        for good in [
            "2024-05-01T10:00:00Z",
            "2024-05-01T10:00:00.5Z",
            "2024-05-01T10:00:00+02:00",
        ] {
            let created = m.create("U", "e", start(good), 0).expect(good);
            assert_eq!(created["start_time"], good);
        }
        for bad in [
            "",
            "2024-05-01",
            "2024-05-01T10:00:00",
            "2024-13-01T10:00:00Z",
        ] {
            assert!(m.create("U", "e", start(bad), 0).is_err(), "{bad}");
        }
    }

    #[test]
    fn storage_is_bounded_per_user() {
        let mut m = Meetings::default();
        for _ in 0..MAX_MEETINGS_PER_USER + 5 {
            m.create("U", "e", NewMeeting::default(), 0).expect("valid");
        }
        assert_eq!(
            m.list("U", 1, None).expect("list")["total_records"],
            MAX_MEETINGS_PER_USER
        );
    }
}
