//! Paged, filtered listings of models and versions.

use std::collections::BTreeMap;

use modelplane_store::schema::{self, ModelRecord, ModelsKey, VersionRecord};

use crate::domain::parse_alias;
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

/// Keys read by the first store request while scanning for a page of models; each
/// further request reads twice as many (up to `MAX_SCAN_CHUNK`), so a selective label
/// filter that must scan far takes a few round trips, not hundreds.
const SCAN_CHUNK: usize = 512;
const MAX_SCAN_CHUNK: usize = 16384;

/// The key just past every key of `model`'s subtree (`{MODELS}{model}/…`): '0' follows '/'.
fn subtree_end(model: &str) -> String {
    format!("{}{model}0", schema::MODELS)
}

impl Registry {
    /// Models in name order after `token`, whose names start with `prefix` and that carry
    /// every label in `labels`.
    ///
    /// The models prefix also holds every version record, so this reads it in chunks
    /// from the token onwards and stops once it has a page and every alias of the page's
    /// models: the cost follows the page, not the size of the registry. Names with '-'
    /// or '.' sort before '/', so a model's subtree can come after later models' records;
    /// the scan continues until it passed the end of every collected subtree.
    pub async fn list_models_page(
        &self,
        prefix: &str,
        labels: &BTreeMap<String, String>,
        size: u32,
        token: &str,
    ) -> Result<Page<(ModelRecord, BTreeMap<String, u64>)>> {
        self.scan_models_page(prefix, labels, page_size(size)?, token, SCAN_CHUNK).await
    }

    async fn scan_models_page(
        &self,
        prefix: &str,
        labels: &BTreeMap<String, String>,
        size: usize,
        token: &str,
        chunk_keys: usize,
    ) -> Result<Page<(ModelRecord, BTreeMap<String, u64>)>> {
        let scan_prefix = format!("{}{prefix}", schema::MODELS);
        let mut start = std::cmp::max(scan_prefix.clone(), format!("{}{token}", schema::MODELS));
        let mut models: Vec<ModelRecord> = Vec::new();
        let mut aliases: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
        let mut chunk_keys = chunk_keys;
        loop {
            let chunk = self.store.range_from(&scan_prefix, &start, chunk_keys).await?;
            for kv in &chunk.kvs {
                match schema::parse_models_key(&kv.key) {
                    Some(ModelsKey::Model(name)) if name > token => {
                        let record: ModelRecord = schema::decode(&kv.key, &kv.value)?;
                        if labels.iter().all(|(k, v)| record.labels.get(k) == Some(v)) {
                            models.push(record);
                        }
                    }
                    Some(ModelsKey::Alias(model, alias)) if model > token => {
                        let version = parse_alias(&kv.key, &kv.value)?;
                        aliases.entry(model.to_owned()).or_default().insert(alias.to_owned(), version);
                    }
                    _ => {}
                }
            }
            let Some(last) = chunk.kvs.last() else { break };
            let page_complete = models.len() > size
                && models[..size].iter().map(|m| subtree_end(&m.name)).max().is_some_and(|end| last.key >= end);
            if !chunk.more || page_complete {
                break;
            }
            start = format!("{}\0", last.key);
            chunk_keys = (chunk_keys * 2).min(MAX_SCAN_CHUNK.max(chunk_keys));
        }
        let with_aliases =
            models.into_iter().map(|m| (aliases.remove(&m.name).unwrap_or_default(), m)).map(|(a, m)| (m, a));
        Ok(paginate(with_aliases.collect(), size, |(m, _)| m.name.clone()))
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use modelplane_store::{EmbeddedStore, KvStore};

    use super::*;
    use crate::{BlobLocation, BlobStore, RegistryConfig};

    /// Names whose records interleave with other models' subtrees ('-' and '.' sort
    /// before '/'), each with versions and aliases, read in every chunk and page size.
    #[tokio::test]
    async fn model_pages_carry_every_alias_whatever_the_chunk_size() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store: Arc<dyn KvStore> = Arc::new(EmbeddedStore::open(dir.path().join("store.redb")).expect("store"));
        let blobs = BlobStore::open(&BlobLocation::Local(dir.path().join("blobs"))).await.expect("blobs");
        let names = ["a", "a-b", "a.c", "a_d", "ab", "b"];
        for (i, name) in names.iter().enumerate() {
            let mut record = ModelRecord { name: (*name).into(), ..Default::default() };
            if i % 2 == 0 {
                record.labels.insert("team".into(), "x".into());
            }
            store.put(&schema::model_key(name), schema::encode(&record), None).await.expect("put");
            for version in 1..=3 {
                store.put(&schema::version_key(name, version), b"{}".to_vec(), None).await.expect("put");
            }
            store.put(&schema::alias_key(name, "prod"), (i + 1).to_string().into_bytes(), None).await.expect("put");
            store.put(&schema::alias_key(name, "zz"), b"2".to_vec(), None).await.expect("put");
        }
        let registry = Registry::new(store, blobs, RegistryConfig::default());
        let team: BTreeMap<String, String> = [("team".to_owned(), "x".to_owned())].into();
        for (labels, expected) in [(BTreeMap::new(), names.to_vec()), (team, vec!["a", "a.c", "ab"])] {
            for chunk in [1, 2, 3, 7, 512] {
                for size in [1, 2, 4, 10] {
                    let (mut seen, mut token) = (Vec::new(), String::new());
                    loop {
                        let page = registry.scan_models_page("", &labels, size, &token, chunk).await.expect("page");
                        assert!(page.items.len() <= size);
                        for (model, aliases) in page.items {
                            let index = names.iter().position(|n| *n == model.name).expect("known") as u64;
                            let expected_aliases = BTreeMap::from([("prod".to_owned(), index + 1), ("zz".into(), 2)]);
                            assert_eq!(aliases, expected_aliases, "{} (chunk {chunk}, size {size})", model.name);
                            seen.push(model.name);
                        }
                        if page.next_token.is_empty() {
                            break;
                        }
                        token = page.next_token;
                    }
                    assert_eq!(seen, expected, "chunk {chunk}, size {size}");
                }
            }
        }
        let page = registry.scan_models_page("a-", &BTreeMap::new(), 10, "", 2).await.expect("page");
        assert_eq!(page.items.iter().map(|(m, _)| m.name.as_str()).collect::<Vec<_>>(), ["a-b"]);
    }
}
