// Click a column header to sort its table (numbers by value); no network, no libraries.
document.querySelectorAll('table.sortable th').forEach(function (th) {
  th.addEventListener('click', function () {
    var table = th.closest('table'), body = table.tBodies[0], index = th.cellIndex;
    var down = th.getAttribute('aria-sort') === 'ascending';
    table.querySelectorAll('th').forEach(function (h) { h.removeAttribute('aria-sort'); });
    th.setAttribute('aria-sort', down ? 'descending' : 'ascending');
    th.setAttribute('data-arrow', down ? ' \u25bc' : ' \u25b2');
    var key = function (row) {
      var cell = row.cells[index];
      var v = cell.getAttribute('data-value');
      return v !== null ? parseFloat(v) : cell.textContent.trim().toLowerCase();
    };
    Array.from(body.rows).sort(function (a, b) {
      var x = key(a), y = key(b), c = x < y ? -1 : x > y ? 1 : 0;
      return down ? -c : c;
    }).forEach(function (row) { body.appendChild(row); });
  });
});
