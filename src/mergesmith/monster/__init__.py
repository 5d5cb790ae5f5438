"""MergeMonster: objective-driven layer-by-layer merging, and MonsterMapper. See docs/monster.md."""
