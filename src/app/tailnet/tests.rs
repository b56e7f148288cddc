//! Tests of the tailnet side: added below.
