//! Opaque keyset cursors: base64url of the last row's sort key and id, plus a fingerprint of the
//! filter and sort, so a cursor cannot be replayed against a different query.
//!
//! Keyset (not offset) paging means rows inserted while a client pages never shift the rows it
//! has not read yet: no duplicates and no gaps. Rows whose *sort key* changes between two page
//! reads (a re-scored finding under `sort=score`) can move across the cursor; `sort=created`
//! has an immutable key and is exact even then.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::error::StoreError;
use crate::model::{ListFilter, SortKey, SubjectKind};

/// Where the previous page ended.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Position {
    Score { score: f64, id: i64 },
    LastSeen { last_seen_ms: i64, id: i64 },
    Created { id: i64 },
}

#[derive(Serialize, Deserialize)]
struct Wire {
    v: u8,
    /// Filter fingerprint.
    f: u64,
    s: SortKey,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    score: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_seen: Option<i64>,
    id: i64,
}

/// A stable 64-bit FNV-1a hash of the query shape (stable across processes and versions,
/// unlike `DefaultHasher`).
pub(crate) fn fingerprint(kind: SubjectKind, filter: &ListFilter, sort: SortKey) -> u64 {
    let text = serde_json::to_string(&(kind, filter, sort)).unwrap_or_default();
    text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

pub(crate) fn encode(position: Position, fingerprint: u64) -> String {
    let (s, score, last_seen, id) = match position {
        Position::Score { score, id } => (SortKey::Score, Some(score), None, id),
        Position::LastSeen { last_seen_ms, id } => {
            (SortKey::LastSeen, None, Some(last_seen_ms), id)
        }
        Position::Created { id } => (SortKey::Created, None, None, id),
    };
    let wire = Wire {
        v: 1,
        f: fingerprint,
        s,
        score,
        last_seen,
        id,
    };
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(&wire).unwrap_or_default())
}

pub(crate) fn decode(
    cursor: &str,
    sort: SortKey,
    fingerprint: u64,
) -> Result<Position, StoreError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(cursor.as_bytes())
        .map_err(|_| StoreError::InvalidCursor)?;
    let wire: Wire = serde_json::from_slice(&bytes).map_err(|_| StoreError::InvalidCursor)?;
    if wire.v != 1 || wire.f != fingerprint || wire.s != sort {
        return Err(StoreError::InvalidCursor);
    }
    match (wire.s, wire.score, wire.last_seen) {
        (SortKey::Score, Some(score), None) if score.is_finite() => {
            Ok(Position::Score { score, id: wire.id })
        }
        (SortKey::LastSeen, None, Some(last_seen_ms)) => Ok(Position::LastSeen {
            last_seen_ms,
            id: wire.id,
        }),
        (SortKey::Created, None, None) => Ok(Position::Created { id: wire.id }),
        _ => Err(StoreError::InvalidCursor),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_round_trips_its_position_exactly() {
        let filter = ListFilter::default();
        let f = fingerprint(SubjectKind::Account, &filter, SortKey::Score);
        let position = Position::Score {
            score: 0.1 + 0.2,
            id: 42,
        };
        let cursor = encode(position, f);
        assert_eq!(decode(&cursor, SortKey::Score, f).unwrap(), position);
    }

    #[test]
    fn a_cursor_is_refused_for_another_filter_or_sort() {
        let open = ListFilter {
            status: vec![crate::model::ReviewStatus::Open],
            ..Default::default()
        };
        let f_open = fingerprint(SubjectKind::Account, &open, SortKey::Created);
        let f_any = fingerprint(
            SubjectKind::Account,
            &ListFilter::default(),
            SortKey::Created,
        );
        let cursor = encode(Position::Created { id: 7 }, f_open);
        assert!(matches!(
            decode(&cursor, SortKey::Created, f_any),
            Err(StoreError::InvalidCursor)
        ));
        assert!(matches!(
            decode(&cursor, SortKey::Score, f_open),
            Err(StoreError::InvalidCursor)
        ));
        assert!(matches!(
            decode("not base64 at all!", SortKey::Created, f_open),
            Err(StoreError::InvalidCursor)
        ));
    }
}
