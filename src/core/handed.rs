//! Values a deserializer reads by hand and hands over to `Deserialize`.
//!
//! The web reader of JS values (`web::de`) has hand readers for the shapes
//! that cross most (a record, a stored outbox entry). A type that has one
//! deserializes by asking for a newtype struct under its own name (a
//! static, known by its address); that reader answers by reading the value
//! by hand, handing it over here and visiting a unit, so the module holds
//! no serde visitor of the type for it. Any other deserializer (JSON in
//! tests) sees an ordinary newtype and reads the type's derived form.

use std::any::Any;
use std::cell::RefCell;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserialize, Deserializer, Visitor};

thread_local! {
    static HANDED_OVER: RefCell<Option<Box<dyn Any>>> = const { RefCell::new(None) };
}

/// Gives `value`, read by hand, to the `Deserialize` that asked for it.
pub fn hand_over<T: Any>(value: T) {
    HANDED_OVER.with(|slot| *slot.borrow_mut() = Some(Box::new(value)));
}

/// Deserializes a `T` by asking for the newtype struct `name`: handed over
/// by a deserializer that reads `T` by hand, else read as `Derived`.
///
/// # Errors
/// The deserializer's.
pub fn deserialize<'de, D, T, Derived>(deserializer: D, name: &'static str) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Any,
    Derived: Deserialize<'de> + Into<T>,
{
    deserializer.deserialize_newtype_struct(
        name,
        Handed::<T, Derived> {
            name,
            types: PhantomData,
        },
    )
}

struct Handed<T, Derived> {
    name: &'static str,
    types: PhantomData<(T, Derived)>,
}

impl<'de, T: Any, Derived: Deserialize<'de> + Into<T>> Visitor<'de> for Handed<T, Derived> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }

    /// What a hand reader handed over.
    fn visit_unit<E: de::Error>(self) -> Result<T, E> {
        HANDED_OVER
            .with(|slot| slot.borrow_mut().take())
            .and_then(|value| value.downcast::<T>().ok())
            .map(|value| *value)
            .ok_or_else(|| E::custom("nothing was handed over"))
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, deserializer: D) -> Result<T, D::Error> {
        Derived::deserialize(deserializer).map(Into::into)
    }
}
