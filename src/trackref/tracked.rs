//! `Tracked`: a shared value reachable from the registry, and what a query finds.

use std::any::Any;
use std::fmt;
use std::ops::Deref;
use std::sync::{Arc, Weak};
use std::time::Duration;

use super::registry::FieldsFn;
use super::{ObjectRef, short_type_name};

struct TrackedInner<T: 'static> {
    value: T,
    _ref: ObjectRef<T>,
}

/// A shared handle (like `Arc`) to a value whose live instances can be
/// reached from the registry: [`get_oldest`](super::get_oldest),
/// [`iter_all`](super::iter_all), [`oldest`](super::oldest),
/// [`all`](super::all), and the console. [`Tracked::new`] takes any value;
/// [`Tracked::with_fields`] takes a `serde::Serialize` one, whose fields the
/// console then reads (`get_oldest('HtmlResponse').url`).
///
/// The registry holds it weakly: when the last `Tracked` drops, the value
/// drops and its record goes.
pub struct Tracked<T: Send + Sync + 'static> {
    inner: Arc<TrackedInner<T>>,
}

fn fields_of<T: serde::Serialize + Send + Sync + 'static>(
    any: &(dyn Any + Send + Sync),
) -> Option<serde_json::Value> {
    let inner = any.downcast_ref::<TrackedInner<T>>()?;
    serde_json::to_value(&inner.value).ok()
}

/// A value without fields to show.
fn no_fields(_: &(dyn Any + Send + Sync)) -> Option<serde_json::Value> {
    None
}

impl<T: Send + Sync + 'static> Tracked<T> {
    /// Wraps `value` as an instance of `T`'s short name (the console shows
    /// its class and age; [`Tracked::with_fields`] shows its fields too).
    pub fn new(value: T) -> Self {
        Self::registered(
            value,
            short_type_name(std::any::type_name::<T>()),
            &[],
            no_fields,
        )
    }

    fn registered(
        value: T,
        name: &'static str,
        bases: &'static [&'static str],
        fields: FieldsFn,
    ) -> Self {
        let inner = Arc::new_cyclic(|weak: &Weak<TrackedInner<T>>| {
            let erased: Weak<dyn Any + Send + Sync> = weak.clone();
            TrackedInner {
                value,
                _ref: ObjectRef::register_as(name, bases, Some((erased, fields))),
            }
        });
        Tracked { inner }
    }
}

impl<T: serde::Serialize + Send + Sync + 'static> Tracked<T> {
    /// Wraps `value` as an instance of `T`'s short name whose fields the
    /// console and [`LiveObject::fields`] read.
    pub fn with_fields(value: T) -> Self {
        Self::with_class(value, short_type_name(std::any::type_name::<T>()), &[])
    }

    /// Wraps `value`, with its fields, as an instance of class `name` with
    /// base names `bases`.
    pub fn with_class(value: T, name: &'static str, bases: &'static [&'static str]) -> Self {
        Self::registered(value, name, bases, fields_of::<T>)
    }
}

impl<T: Send + Sync + 'static> Clone for Tracked<T> {
    fn clone(&self) -> Self {
        Tracked {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<T: Send + Sync + 'static> Deref for Tracked<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.inner.value
    }
}

impl<T: fmt::Debug + Send + Sync + 'static> fmt::Debug for Tracked<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Tracked").field(&self.inner.value).finish()
    }
}

impl<T: Send + Sync + 'static> Tracked<T> {
    /// Whether two handles point to the same value.
    pub fn ptr_eq(a: &Self, b: &Self) -> bool {
        Arc::ptr_eq(&a.inner, &b.inner)
    }
}

/// One live instance found in the registry.
#[derive(Clone)]
#[non_exhaustive]
pub struct LiveObject {
    /// Its class.
    pub class: &'static str,
    /// How long ago it was created.
    pub age: Duration,
    pub(super) created: u64,
    pub(super) object: Option<(Arc<dyn Any + Send + Sync>, FieldsFn)>,
}

impl LiveObject {
    /// Its fields as JSON, for a value held in a [`Tracked`] whose type is
    /// `Serialize`; `None` for an instance counted through a bare
    /// [`ObjectRef`] (nothing to show but its class and age).
    pub fn fields(&self) -> Option<serde_json::Value> {
        let (obj, fields) = self.object.as_ref()?;
        fields(obj.as_ref())
    }

    /// The value as a [`Tracked<T>`], if it is one of that type.
    pub fn downcast<T: Send + Sync + 'static>(&self) -> Option<Tracked<T>> {
        let (obj, _) = self.object.as_ref()?;
        let inner = Arc::clone(obj).downcast::<TrackedInner<T>>().ok()?;
        Some(Tracked { inner })
    }
}

impl fmt::Debug for LiveObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LiveObject")
            .field("class", &self.class)
            .field("age", &self.age)
            .field("fields", &self.fields())
            .finish()
    }
}
