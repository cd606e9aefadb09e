//! Lattice, mutator, decomposition, delta-sync and codec laws, for every CRDT type, on states
//! taken from random histories at several replicas (with full-state syncs, digest syncs and
//! lone deltas that leave gaps in causal contexts).

use crate::common::*;
use proptest::test_runner::TestCaseError;
use troupe_crdt::*;

/// Every law for `S`, on one random world.
fn check_all<S: Subject>(world: &RawWorld) -> Result<(), TestCaseError> {
    let actions = decode::<S>(&world.actions, false);
    let run = run::<S>(&actions);
    let (a, b, c) = pick(&run, &world.picks);
    let result = (|| {
        laws::lattice(&a, &b, &c)?;
        laws::mutators(&run)?;
        laws::decomposition(&a)?;
        laws::decomposition(&a.join(&b))?;
        laws::delta_sync(&a, &b)?;
        laws::codec(&a, world.flip)
    })();
    context(result, &actions)
}

fn laws_hold<S: Subject>() {
    property(256, world(), &|w| check_all::<S>(&w));
}

/// One test per type.
macro_rules! laws {
    ($($name:ident: $ty:ty,)*) => {$(
        #[test]
        fn $name() {
            laws_hold::<$ty>();
        }
    )*};
}

laws! {
    gcounter: GCounter<Rep>,
    pncounter: PnCounter<Rep>,
    bounded_counter: BoundedCounter<Rep>,
    lexcounter: LexCounter<Rep>,
    maxint: MaxInt,
    gset: GSet<u8>,
    twopset: TwoPSet<u8>,
    orset: OrSet<u8, Rep>,
    awset: AwSet<u8, Rep>,
    lww_register: LwwRegister<u8, Rep>,
    mv_register: MvRegister<u8, Rep>,
    ivar: IVar<u8>,
    ewflag: EwFlag<Rep>,
    dwflag: DwFlag<Rep>,
    boolean: Boolean,
    pair: Pair<GCounter<Rep>, AwSet<u8, Rep>>,
    gmap_of_counters: GMap<u8, PnCounter<Rep>>,
    gmap_of_registers: GMap<u8, MvRegister<u8, Rep>>,
    awmap_of_sets: AwMap<u8, AwSet<u8, Rep>, Rep>,
    awmap_of_maps: AwMap<u8, AwMap<u8, EwFlag<Rep>, Rep>, Rep>,
    mvmap: MvMap<u8, u8, Rep>,
}
