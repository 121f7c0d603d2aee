//! Keyset paging by id, newest first, for the tables the console and the
//! CLI list (audit here; applications, accounts and the outbox in
//! kxca-provisioner). A page is found with `id < ?`/`id > ?` on the primary
//! key, so its cost does not grow with how far back it is (OFFSET would
//! read and drop every row before it).

use crate::Error;

/// Where a page starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Cursor {
    /// The newest rows.
    #[default]
    Newest,
    /// Rows older than this id (the "next" link).
    Before(i64),
    /// Rows newer than this id (the "previous" link).
    After(i64),
}

impl Cursor {
    /// From a query string's `before` / `after` values (the console's links);
    /// anything else is the newest page.
    pub fn from_query(before: Option<&str>, after: Option<&str>) -> Cursor {
        match (
            before.and_then(|b| b.parse().ok()),
            after.and_then(|a| a.parse().ok()),
        ) {
            (Some(b), _) => Cursor::Before(b),
            (None, Some(a)) => Cursor::After(a),
            _ => Cursor::Newest,
        }
    }
}

/// A page request: where, and how many rows at most (1..=1000).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    /// Where the page starts.
    pub cursor: Cursor,
    /// Rows per page.
    pub size: usize,
}

impl PageRequest {
    /// The newest `size` rows.
    pub fn newest(size: usize) -> PageRequest {
        PageRequest {
            cursor: Cursor::Newest,
            size,
        }
    }
}

/// One page, newest first, and the cursors of its neighbours.
#[derive(Debug, Clone)]
pub struct Page<T> {
    /// The rows, newest (highest id) first.
    pub items: Vec<T>,
    /// When newer rows exist: the cursor value for them (`Cursor::After`).
    pub newer: Option<i64>,
    /// When older rows exist: the cursor value for them (`Cursor::Before`).
    pub older: Option<i64>,
}

/// The id condition and order a page query uses. A table's query adds
/// `AND id {op} ?K ORDER BY id {order} LIMIT ?L` with `key` and `limit`
/// bound to its own parameter numbers.
#[derive(Debug, Clone, Copy)]
pub struct Keyset {
    /// `<` or `>`.
    pub op: &'static str,
    /// `DESC` or `ASC`.
    pub order: &'static str,
    /// The id compared with.
    pub key: i64,
    /// Rows to read.
    pub limit: i64,
}

/// Runs `fetch` (a table's query under a [`Keyset`]) for the page `req`
/// asks, and once more (one row) to learn whether there is a page on the
/// other side. `id` gives a row's id.
pub fn page<T>(
    req: &PageRequest,
    id: impl Fn(&T) -> i64,
    mut fetch: impl FnMut(Keyset) -> Result<Vec<T>, Error>,
) -> Result<Page<T>, Error> {
    let size = req.size.clamp(1, 1000);
    let older = |key| Keyset {
        op: "<",
        order: "DESC",
        key,
        limit: size as i64 + 1,
    };
    let newer = |key| Keyset {
        op: ">",
        order: "ASC",
        key,
        limit: size as i64 + 1,
    };
    let probe = |k: Keyset| Keyset { limit: 1, ..k };
    match req.cursor {
        Cursor::Newest | Cursor::Before(_) => {
            let key = match req.cursor {
                Cursor::Before(b) => b,
                _ => i64::MAX,
            };
            let mut items = fetch(older(key))?;
            let more = items.len() > size;
            items.truncate(size);
            let older_cursor = if more { items.last().map(&id) } else { None };
            let newer_cursor = match req.cursor {
                Cursor::Newest => None,
                _ => {
                    // Anything at or above the first row shown (or the
                    // cursor, on an empty page) is on a newer page.
                    let anchor = items.first().map(&id).unwrap_or(key.saturating_sub(1));
                    if fetch(probe(newer(anchor)))?.is_empty() {
                        None
                    } else {
                        Some(anchor)
                    }
                }
            };
            Ok(Page {
                items,
                newer: newer_cursor,
                older: older_cursor,
            })
        }
        Cursor::After(a) => {
            let mut items = fetch(newer(a))?;
            let more = items.len() > size;
            items.truncate(size);
            items.reverse();
            let newer_cursor = if more { items.first().map(&id) } else { None };
            let anchor = items.last().map(&id).unwrap_or(a.saturating_add(1));
            let older_cursor = if fetch(probe(older(anchor)))?.is_empty() {
                None
            } else {
                Some(anchor)
            };
            Ok(Page {
                items,
                newer: newer_cursor,
                older: older_cursor,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ids 1..=n, fetched the way SQL would.
    fn fetch(n: i64) -> impl FnMut(Keyset) -> Result<Vec<i64>, Error> {
        move |k| {
            let mut v: Vec<i64> = (1..=n)
                .filter(|i| if k.op == "<" { *i < k.key } else { *i > k.key })
                .collect();
            if k.order == "DESC" {
                v.reverse();
            }
            v.truncate(k.limit as usize);
            Ok(v)
        }
    }

    #[test]
    fn walking_older_then_newer_visits_every_id_once() {
        let n = 123;
        let mut seen = Vec::new();
        let mut cursor = Cursor::Newest;
        let mut pages = Vec::new();
        loop {
            let p = page(&PageRequest { cursor, size: 50 }, |i| *i, fetch(n)).unwrap();
            seen.extend(p.items.iter().copied());
            pages.push(p.items.clone());
            match p.older {
                Some(o) => cursor = Cursor::Before(o),
                None => break,
            }
        }
        assert_eq!(seen, (1..=n).rev().collect::<Vec<_>>());
        assert_eq!(pages.len(), 3);
        // Back from the last page: the same pages in reverse.
        let last = page(
            &PageRequest {
                cursor: Cursor::Before(pages[1].last().copied().unwrap()),
                size: 50,
            },
            |i| *i,
            fetch(n),
        )
        .unwrap();
        let back = page(
            &PageRequest {
                cursor: Cursor::After(last.newer.unwrap()),
                size: 50,
            },
            |i| *i,
            fetch(n),
        )
        .unwrap();
        assert_eq!(back.items, pages[1]);
        assert_eq!(back.older, Some(pages[1].last().copied().unwrap()));
        let first = page(
            &PageRequest {
                cursor: Cursor::After(back.newer.unwrap()),
                size: 50,
            },
            |i| *i,
            fetch(n),
        )
        .unwrap();
        assert_eq!(first.items, pages[0]);
        assert_eq!(first.newer, None);
    }

    #[test]
    fn an_empty_table_has_no_neighbours() {
        let p = page(&PageRequest::newest(50), |i| *i, fetch(0)).unwrap();
        assert!(p.items.is_empty() && p.newer.is_none() && p.older.is_none());
    }
}
