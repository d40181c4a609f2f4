"""Small synthetic BMRB NMR-STAR 3.x entries for the input tests."""

from __future__ import annotations


def entity_frame(eid: int, name: str, comps: list[str]) -> str:
    """An entity saveframe with an ``_Entity_comp_index`` loop."""
    rows = "\n".join(f"      {k} {k + 100} {c} {eid}" for k, c in enumerate(comps, start=1))
    return f"""save_entity_{eid}
   _Entity.Sf_category entity
   _Entity.Sf_framecode entity_{eid}
   _Entity.ID {eid}
   _Entity.Name '{name}'
   _Entity.Polymer_type polyribonucleotide
   loop_
      _Entity_comp_index.ID
      _Entity_comp_index.Auth_seq_ID
      _Entity_comp_index.Comp_ID
      _Entity_comp_index.Entity_ID
{rows}
   stop_
save_
"""


def shift_frame(list_id: int, rows: list[tuple]) -> str:
    """An assigned chemical-shift list; rows are (entity, assembly, seq, comp, atom, value)."""
    body = "\n".join(
        f"      {k} {asm} {ent} {seq} {seq + 100} {comp} \"{atom}\" {atom[0]} {val} 0.01 "
        f"{list_id}" for k, (ent, asm, seq, comp, atom, val) in enumerate(rows, start=1))
    return f"""save_assigned_chem_shift_list_{list_id}
   _Assigned_chem_shift_list.Sf_category assigned_chemical_shifts
   _Assigned_chem_shift_list.Sf_framecode assigned_chem_shift_list_{list_id}
   _Assigned_chem_shift_list.ID {list_id}
   loop_
      _Atom_chem_shift.ID
      _Atom_chem_shift.Entity_assembly_ID
      _Atom_chem_shift.Entity_ID
      _Atom_chem_shift.Seq_ID
      _Atom_chem_shift.Auth_seq_ID
      _Atom_chem_shift.Comp_ID
      _Atom_chem_shift.Atom_ID
      _Atom_chem_shift.Atom_type
      _Atom_chem_shift.Val
      _Atom_chem_shift.Val_err
      _Atom_chem_shift.Assigned_chem_shift_list_ID
{body}
   stop_
save_
"""


def entry(*frames: str) -> str:
    """A complete entry from saveframes."""
    return "data_99999\n\n" + "\n".join(frames)
