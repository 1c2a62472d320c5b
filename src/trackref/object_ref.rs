//! `ObjectRef`: a field that counts the struct holding it.

use std::any::{Any, TypeId};
use std::fmt;
use std::marker::PhantomData;
use std::sync::Weak;

use super::registry::{FieldsFn, Slot, cached_class, class_for, register, unregister};
use super::{enabled, short_type_name};

/// A field that makes the struct holding it count as a live instance of a
/// class (by default the short name of `T`).
///
/// Cloning an `ObjectRef` registers a new instance (a cloned struct is a new
/// object). [`Default`] is [`ObjectRef::new`].
pub struct ObjectRef<T: ?Sized + 'static> {
    slot: Option<Slot>,
    _type: PhantomData<fn() -> T>,
}

impl<T: ?Sized + 'static> ObjectRef<T> {
    /// Registers an instance of class `T`'s short name.
    pub fn new() -> Self {
        if !enabled() {
            return Self::untracked();
        }
        let class = cached_class(TypeId::of::<T>(), 0).unwrap_or_else(|| {
            class_for(
                TypeId::of::<T>(),
                0,
                short_type_name(std::any::type_name::<T>()),
                &[],
            )
        });
        ObjectRef {
            slot: Some(register(class, None)),
            _type: PhantomData,
        }
    }

    /// Registers an instance of class `name` whose bases are `bases` (so
    /// that `ignore` of a base skips it, as a subclass in Python).
    pub fn with_class(name: &'static str, bases: &'static [&'static str]) -> Self {
        Self::register_as(name, bases, None)
    }

    /// A reference that counts nothing: for a struct that is wrapped in
    /// [`Tracked`](super::Tracked), which registers it instead.
    pub const fn untracked() -> Self {
        ObjectRef {
            slot: None,
            _type: PhantomData,
        }
    }

    pub(super) fn register_as(
        name: &'static str,
        bases: &'static [&'static str],
        object: Option<(Weak<dyn Any + Send + Sync>, FieldsFn)>,
    ) -> Self {
        if !enabled() {
            return Self::untracked();
        }
        let key = name.as_ptr() as usize;
        let class = cached_class(TypeId::of::<T>(), key)
            .unwrap_or_else(|| class_for(TypeId::of::<T>(), key, name, bases));
        ObjectRef {
            slot: Some(register(class, object)),
            _type: PhantomData,
        }
    }

    /// The class this instance counts under (`None` when not registered).
    pub fn class_name(&self) -> Option<&'static str> {
        self.slot.map(|s| s.class.name)
    }
}

impl<T: ?Sized + 'static> Default for ObjectRef<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: ?Sized + 'static> Clone for ObjectRef<T> {
    fn clone(&self) -> Self {
        match self.slot {
            Some(s) => Self::register_as(s.class.name, s.class.bases, None),
            None => Self::untracked(),
        }
    }
}

impl<T: ?Sized + 'static> Drop for ObjectRef<T> {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            unregister(slot);
        }
    }
}

impl<T: ?Sized + 'static> fmt::Debug for ObjectRef<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ObjectRef({})", self.class_name().unwrap_or("untracked"))
    }
}
