//! The `set` workload: every operation adds a new element, a key `s<n>` of namespace
//! `jepsen` written with put-if-absent; after the faults heal, one fresh client lists
//! every `s` key (linearizable pages) and the set checker compares that final read
//! with the adds: acknowledged adds must be present, nothing else may appear.

use std::sync::atomic::{AtomicU64, Ordering};

use cairn::client::{Client, ListOptions, PutOptions};
use serde_json::{json, Value};

use super::client::{write_error_outcome, Op, Outcome, Session};

/// Prefix of the set's keys.
pub const ELEMENT_PREFIX: &str = "s";
/// Keys per page of the final listing.
const LIST_PAGE_KEYS: u32 = 1_000;
/// Pages of the final listing, at most (bounds a runaway cursor).
const LIST_PAGES_MAX: u32 = 10_000;

pub struct SetWorkload {
    pub namespace: String,
    next_element: AtomicU64,
}

/// The key of element `n`; zero-padded so listing order is numeric order.
pub fn element_key(n: u64) -> String {
    format!("{ELEMENT_PREFIX}{n:010}")
}

impl SetWorkload {
    pub fn new(namespace: &str) -> SetWorkload {
        SetWorkload {
            namespace: namespace.to_string(),
            next_element: AtomicU64::new(0),
        }
    }

    pub fn next_op(&self) -> Op {
        let n = self.next_element.fetch_add(1, Ordering::Relaxed);
        Op {
            f: "add",
            key: None,
            value: json!(element_key(n)),
        }
    }

    pub async fn execute(&self, session: &Session, op: &Op) -> Outcome {
        let element = op.value.as_str().unwrap_or_default();
        let added = session
            .writer
            .put_with(
                &self.namespace,
                element.as_bytes(),
                element.as_bytes(),
                PutOptions::if_absent(),
            )
            .await;
        match added {
            Ok(_) => Outcome::Ok(op.value.clone()),
            Err(error) => write_error_outcome(&error),
        }
    }

    /// Lists every element with linearizable pages; the final read's value.
    pub async fn read_all(&self, client: &Client) -> Result<Value, cairn::client::Error> {
        let mut options = ListOptions {
            prefix: ELEMENT_PREFIX.as_bytes().to_vec(),
            limit: LIST_PAGE_KEYS,
            ..ListOptions::default()
        };
        let mut elements = Vec::new();
        for _ in 0..LIST_PAGES_MAX {
            let page = client.list_keys(&self.namespace, &options).await?;
            elements.extend(
                page.keys
                    .iter()
                    .map(|key| String::from_utf8_lossy(key).into_owned()),
            );
            match page.next_cursor {
                Some(cursor) => options.cursor = cursor,
                None => break,
            }
        }
        Ok(json!(elements))
    }
}
