//! The whole pipeline for one history file: read events in a [`Format`], pair them,
//! decode them for a [`ModelKind`], and run the linearizability check. The CLI and the
//! fixture tests both go through [`check_history_file`].

use std::path::Path;

use crate::checker::linear::{check_operations, CheckOptions, LinearizabilityReport};
use crate::checker::model::{Model, ModelOperation};
use crate::checker::models::{kv, register, versioned_kv};
use crate::error::Error;
use crate::formats::{parse_events, Format};
use crate::history::{pair_events, OpRecord};

/// The models a history can be checked against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelKind {
    /// [`register::RegisterModel`].
    Register,
    /// [`kv::KvModel`].
    Kv,
    /// [`versioned_kv::VersionedKvModel`].
    VersionedKv,
}

/// A checked history file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryCheck {
    /// Client events read (nemesis and other skipped lines excluded).
    pub event_count: usize,
    pub report: LinearizabilityReport,
}

/// Reads and checks one history file.
pub fn check_history_file(
    model: ModelKind,
    format: Format,
    path: &Path,
    options: &CheckOptions,
) -> Result<HistoryCheck, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    check_history_text(model, format, &text, options)
}

/// Checks a history given as text.
pub fn check_history_text(
    model: ModelKind,
    format: Format,
    text: &str,
    options: &CheckOptions,
) -> Result<HistoryCheck, Error> {
    let events = parse_events(format, text)?;
    let records = pair_events(&events)?;
    let report = match model {
        ModelKind::Register => decode_and_check(
            &register::RegisterModel,
            register::decode,
            &records,
            options,
        )?,
        ModelKind::Kv => decode_and_check(&kv::KvModel, kv::decode, &records, options)?,
        ModelKind::VersionedKv => {
            let model = versioned_kv::versioned_kv_model();
            decode_and_check(&model, versioned_kv::decode, &records, options)?
        }
    };
    Ok(HistoryCheck {
        event_count: events.len(),
        report,
    })
}

type Decoder<M> = fn(&[OpRecord]) -> Result<Vec<ModelOperation<M>>, Error>;

fn decode_and_check<M: Model>(
    model: &M,
    decode: Decoder<M>,
    records: &[OpRecord],
    options: &CheckOptions,
) -> Result<LinearizabilityReport, Error> {
    let operations = decode(records)?;
    Ok(check_operations(model, operations, options))
}
