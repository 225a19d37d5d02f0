//! Which copy a table's location is read from: the copy in this instance's home region, else the
//! primary, else the other copies in the order configured, skipping regions failed over.

use super::config::{RegionsConfig, Replica};

/// Where a table's files are read from now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The location to read (the table's own, or the same path in another copy).
    pub uri: String,
    pub region: Option<String>,
    /// The copy's prefix as the table names it, and the prefix of the copy read: files are
    /// known by the first (so copies compare by path, ETag and size), read through the second.
    pub logical_prefix: String,
    pub read_prefix: String,
    /// The table's location lies in a group of copies.
    pub replicated: bool,
}

impl Route {
    /// The name a file read through this route is known by.
    pub fn logical(&self, uri: &str) -> String {
        let mut uri = uri.to_string();
        self.make_logical(&mut uri);
        uri
    }

    /// [`Self::logical`] in place: a name that stays as it is, is not copied.
    pub fn make_logical(&self, uri: &mut String) {
        if self.replicated
            && let Some(rest) = uri.strip_prefix(&self.read_prefix)
        {
            *uri = format!("{}{rest}", self.logical_prefix);
        }
    }
}

/// Where `uri` (a table's location; `region` the definition's own, if it names one) is read,
/// given which regions are failed over.
pub fn route(
    config: &RegionsConfig,
    uri: &str,
    region: Option<&str>,
    failed_over: impl Fn(&str) -> bool,
) -> Route {
    let plain = Route {
        uri: uri.to_string(),
        region: region
            .map(str::to_string)
            .or_else(|| config.home_region.clone()),
        logical_prefix: String::new(),
        read_prefix: String::new(),
        replicated: false,
    };
    // The copy the location lies in (the longest prefix, should copies nest).
    let Some((group, named)) = config
        .groups
        .iter()
        .flat_map(|g| g.iter().map(move |c| (g, c)))
        .filter(|(_, c)| uri.starts_with(&c.location))
        .filter(|(_, c)| region.is_none_or(|r| r == c.region))
        .max_by_key(|(_, c)| c.location.len())
    else {
        return plain;
    };
    let home = config.home_region.as_deref();
    let mut order: Vec<&Replica> = group
        .iter()
        .filter(|c| Some(c.region.as_str()) == home)
        .collect();
    order.extend(group.iter().filter(|c| Some(c.region.as_str()) != home));
    let chosen = order
        .iter()
        .find(|c| !failed_over(&c.region))
        .unwrap_or(&order[0]);
    Route {
        uri: format!("{}{}", chosen.location, &uri[named.location.len()..]),
        region: Some(chosen.region.clone()),
        logical_prefix: named.location.clone(),
        read_prefix: chosen.location.clone(),
        replicated: true,
    }
}
