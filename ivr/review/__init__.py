"""The line learning from its calls (issue #23): the review queue grouped (groups.py), and a
reviewer's decision turned into a change that is proven, written, audited and undoable
(changes.py). Shared by the dashboard's review page and `ivr review`."""
