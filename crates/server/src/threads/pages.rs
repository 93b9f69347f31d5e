//! Pages of a thread's history for `thread/turns/list` and `thread/items/list`. A cursor is the
//! position of the first entry of a page (included), so a page read backwards from the newest
//! entry starts at the cursor `thread/resume` hands out.

use tether_protocol::{
    ItemsView, SortDirection, ThreadItem, ThreadItemEntry, ThreadItemsListResponse,
    ThreadTurnsListResponse, Turn, TurnItemsView,
};

use crate::error::ServerError;

const DEFAULT_TURNS: usize = 25;
const MAX_TURNS: usize = 200;
const DEFAULT_ITEMS: usize = 50;
const MAX_ITEMS: usize = 500;

/// One page of `len` entries: the positions it holds, in order, and the cursors around it.
struct Page {
    positions: Vec<usize>,
    next: Option<String>,
    backwards: Option<String>,
}

fn page(
    len: usize,
    cursor: Option<&str>,
    limit: usize,
    direction: Option<SortDirection>,
) -> Result<Page, ServerError> {
    let descending = direction != Some(SortDirection::Asc);
    let start = match cursor {
        Some(cursor) => cursor
            .parse::<usize>()
            .ok()
            .filter(|position| *position < len.max(1))
            .ok_or_else(|| ServerError::invalid(format!("invalid cursor: {cursor}")))?,
        None if descending => len.saturating_sub(1),
        None => 0,
    };
    if len == 0 {
        return Ok(Page {
            positions: Vec::new(),
            next: None,
            backwards: None,
        });
    }
    let cursor = |position: usize| Some(position.to_string());
    Ok(if descending {
        let end = (start + 1).saturating_sub(limit);
        Page {
            positions: (end..=start).rev().collect(),
            next: end.checked_sub(1).and_then(cursor),
            backwards: (start + 1 < len).then(|| start + 1).and_then(cursor),
        }
    } else {
        let end = (start + limit).min(len);
        Page {
            positions: (start..end).collect(),
            next: (end < len).then_some(end).and_then(cursor),
            backwards: start.checked_sub(1).and_then(cursor),
        }
    })
}

fn limit(requested: Option<u32>, default: usize, max: usize) -> usize {
    requested.map_or(default, |l| (l as usize).clamp(1, max))
}

/// The cursor of the newest of `len` entries.
pub fn newest(len: usize) -> Option<String> {
    len.checked_sub(1).map(|position| position.to_string())
}

/// A page of `turns`, each with the items `view` asks for.
pub fn turns(
    turns: &[&Turn],
    cursor: Option<&str>,
    requested: Option<u32>,
    direction: Option<SortDirection>,
    view: Option<TurnItemsView>,
) -> Result<ThreadTurnsListResponse, ServerError> {
    let limit = limit(requested, DEFAULT_TURNS, MAX_TURNS);
    let page = page(turns.len(), cursor, limit, direction)?;
    let view = view.unwrap_or(TurnItemsView::Summary);
    let data = page
        .positions
        .iter()
        .map(|&position| {
            let mut turn = turns[position].clone();
            match view {
                TurnItemsView::NotLoaded => {
                    turn.items.clear();
                    turn.items_view = ItemsView::NotLoaded;
                }
                TurnItemsView::Summary => {
                    turn.items
                        .retain(|item| matches!(item, ThreadItem::AgentMessage { .. }));
                    turn.items_view = ItemsView::Summary;
                }
                TurnItemsView::Full => turn.items_view = ItemsView::Full,
            }
            turn
        })
        .collect();
    Ok(ThreadTurnsListResponse {
        data,
        next_cursor: page.next,
        backwards_cursor: page.backwards,
    })
}

/// Every item of `turns` (or of the turn `turn_id`), oldest first, with its turn.
pub fn entries<'a>(turns: &[&'a Turn], turn_id: Option<&str>) -> Vec<(&'a Turn, &'a ThreadItem)> {
    turns
        .iter()
        .filter(|turn| turn_id.is_none_or(|id| turn.id == id))
        .flat_map(|turn| turn.items.iter().map(move |item| (*turn, item)))
        .collect()
}

/// A page of `entries`; only the items on the page are copied.
pub fn items(
    entries: &[(&Turn, &ThreadItem)],
    cursor: Option<&str>,
    requested: Option<u32>,
    direction: Option<SortDirection>,
) -> Result<ThreadItemsListResponse, ServerError> {
    let limit = limit(requested, DEFAULT_ITEMS, MAX_ITEMS);
    let page = page(entries.len(), cursor, limit, direction)?;
    let data = page
        .positions
        .iter()
        .map(|&position| {
            let (turn, item) = entries[position];
            let (started_at_ms, completed_at_ms) = item.times();
            ThreadItemEntry {
                turn_id: turn.id.clone(),
                item: item.clone(),
                started_at_ms,
                completed_at_ms,
            }
        })
        .collect();
    Ok(ThreadItemsListResponse {
        data,
        next_cursor: page.next,
        backwards_cursor: page.backwards,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn positions(
        len: usize,
        cursor: Option<&str>,
        limit: usize,
        asc: bool,
    ) -> (Vec<usize>, Option<String>, Option<String>) {
        let direction = asc.then_some(SortDirection::Asc);
        let page = page(len, cursor, limit, direction).unwrap();
        (page.positions, page.next, page.backwards)
    }

    #[test]
    fn descending_pages_walk_from_the_newest_and_include_their_cursor() {
        assert_eq!(
            positions(5, None, 2, false),
            (vec![4, 3], Some("2".into()), None)
        );
        assert_eq!(
            positions(5, Some("2"), 2, false),
            (vec![2, 1], Some("0".into()), Some("3".into()))
        );
        assert_eq!(
            positions(5, Some("0"), 2, false),
            (vec![0], None, Some("1".into()))
        );
        assert_eq!(
            positions(5, newest(5).as_deref(), 10, false),
            (vec![4, 3, 2, 1, 0], None, None)
        );
    }

    #[test]
    fn ascending_pages_walk_from_the_oldest() {
        assert_eq!(
            positions(5, None, 2, true),
            (vec![0, 1], Some("2".into()), None)
        );
        assert_eq!(
            positions(5, Some("4"), 2, true),
            (vec![4], None, Some("3".into()))
        );
    }

    #[test]
    fn empty_histories_and_bad_cursors() {
        assert_eq!(positions(0, None, 2, false), (vec![], None, None));
        assert_eq!(newest(0), None);
        for bad in ["5", "x", "-1"] {
            assert!(page(5, Some(bad), 2, None).is_err(), "{bad}");
        }
    }
}
