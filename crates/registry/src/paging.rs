//! Paged, filtered listings of models and versions.

use std::collections::BTreeMap;

use modelplane_store::schema::{ModelRecord, VersionRecord};

use crate::{Error, Registry, Result};

/// Default and largest page sizes.
const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 1000;

/// One page of a listing.
#[derive(Debug)]
pub struct Page<T> {
    /// The items, in order.
    pub items: Vec<T>,
    /// Pass back to get the next page; empty on the last.
    pub next_token: String,
}

fn page_size(requested: u32) -> Result<usize> {
    match requested as usize {
        0 => Ok(DEFAULT_PAGE),
        n if n <= MAX_PAGE => Ok(n),
        n => Err(Error::InvalidArgument(format!("page_size {n} is too large; at most {MAX_PAGE}"))),
    }
}

fn paginate<T>(items: Vec<T>, size: usize, token_of: impl Fn(&T) -> String) -> Page<T> {
    let more = items.len() > size;
    let mut items = items;
    items.truncate(size);
    let next_token = if more { items.last().map(&token_of).unwrap_or_default() } else { String::new() };
    Page { items, next_token }
}

impl Registry {
    /// Models in name order after `token`, whose names start with `prefix` and that carry
    /// every label in `labels`.
    pub async fn list_models_page(
        &self,
        prefix: &str,
        labels: &BTreeMap<String, String>,
        size: u32,
        token: &str,
    ) -> Result<Page<(ModelRecord, BTreeMap<String, u64>)>> {
        let size = page_size(size)?;
        let matching: Vec<_> = self
            .list_models()
            .await?
            .into_iter()
            .filter(|(m, _)| m.name.starts_with(prefix) && m.name.as_str() > token)
            .filter(|(m, _)| labels.iter().all(|(k, v)| m.labels.get(k) == Some(v)))
            .collect();
        Ok(paginate(matching, size, |(m, _)| m.name.clone()))
    }

    /// A model's versions in number order after `token` (a version number).
    pub async fn list_versions_page(
        &self,
        model: &str,
        size: u32,
        token: &str,
        include_archived: bool,
    ) -> Result<Page<VersionRecord>> {
        let size = page_size(size)?;
        let after: u64 = if token.is_empty() {
            0
        } else {
            token
                .parse()
                .map_err(|_| Error::InvalidArgument(format!("page_token {token:?} is not from ListVersions")))?
        };
        let matching: Vec<VersionRecord> = self
            .list_versions(model)
            .await?
            .into_iter()
            .filter(|v| v.version > after && (include_archived || !v.archived))
            .collect();
        Ok(paginate(matching, size, |v| v.version.to_string()))
    }
}
