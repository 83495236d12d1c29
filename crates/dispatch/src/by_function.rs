//! A map keyed by function, then by version or qualifier, that is read
//! with borrowed names: the lookups on every invocation allocate nothing.

use std::collections::HashMap;

pub(crate) struct ByFunction<V> {
    map: HashMap<String, HashMap<String, V>>,
}

impl<V> Default for ByFunction<V> {
    fn default() -> Self {
        ByFunction {
            map: HashMap::new(),
        }
    }
}

impl<V> ByFunction<V> {
    pub(crate) fn get(&self, function: &str, key: &str) -> Option<&V> {
        self.map.get(function)?.get(key)
    }

    pub(crate) fn insert(&mut self, function: &str, key: &str, value: V) {
        match self.map.get_mut(function) {
            Some(inner) => {
                inner.insert(key.to_string(), value);
            }
            None => {
                let inner = HashMap::from([(key.to_string(), value)]);
                self.map.insert(function.to_string(), inner);
            }
        }
    }

    /// Drops everything kept for `function`.
    pub(crate) fn remove(&mut self, function: &str) {
        self.map.remove(function);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_kept_apart_and_removed_by_function() {
        let mut m = ByFunction::default();
        m.insert("f", "1", 'a');
        m.insert("f", "2", 'b');
        m.insert("g", "1", 'c');
        m.insert("f", "1", 'd');
        assert_eq!(m.get("f", "1"), Some(&'d'));
        assert_eq!(m.get("f", "2"), Some(&'b'));
        assert_eq!(m.get("g", "1"), Some(&'c'));
        assert_eq!(m.get("g", "2"), None);
        m.remove("f");
        assert_eq!(m.get("f", "2"), None);
        assert_eq!(m.get("g", "1"), Some(&'c'));
    }
}
