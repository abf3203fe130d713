-- rcmd.lua: search the rcmd daemon from Neovim (0.7+) and jump to a result.
--
-- Install: copy this file to ~/.config/nvim/lua/rcmd.lua, then in init.lua:
--   local rcmd = require("rcmd")
--   vim.keymap.set("n", "<leader>rs", rcmd.prompt, { desc = "rcmd search" })
--   vim.api.nvim_create_user_command("Rcmd", function(o) rcmd.pick(o.args) end, { nargs = "+" })
--
-- It speaks the protocol in ipc/PROTOCOL.md directly over the Unix socket: one JSON
-- request line, one JSON reply line. Start the daemon once with `rcmd index PATH`.
-- Each method's params (here `search`: query, limit, mode, root; also path, kind,
-- symbol) are defined once in ipc/requests.py (SearchRequest etc.): the reference for
-- names, defaults and allowed values.

local M = {}

M.config = { limit = 20, mode = "hybrid", timeout_ms = 10000 }

-- The socket the daemon listens on: $RCMD_HOME/run/rcmd.sock, else the user runtime dir.
function M.socket_path()
  if M.config.socket then
    return M.config.socket
  end
  local home = os.getenv("RCMD_HOME")
  if home and home ~= "" then
    return home .. "/run/rcmd.sock"
  end
  local runtime = os.getenv("XDG_RUNTIME_DIR")
  if runtime and runtime ~= "" then
    return runtime .. "/rcmd/rcmd.sock"
  end
  return "/run/user/" .. vim.loop.getuid() .. "/rcmd/rcmd.sock"
end

local next_id = 0

-- Send one request and wait for its reply. Returns result, or nil and an error message.
function M.request(method, params)
  next_id = next_id + 1
  if params == nil or vim.tbl_isempty(params) then
    params = vim.empty_dict() -- an empty Lua table would encode as [], not {}
  end
  local line = vim.json.encode({ id = next_id, method = method, params = params })
  local pipe = vim.loop.new_pipe(false)
  local buffer, reply, failure = "", nil, nil
  pipe:connect(M.socket_path(), function(err)
    if err then
      failure = "daemon not running; start it with: rcmd index PATH (" .. err .. ")"
      return
    end
    pipe:write(line .. "\n")
    pipe:read_start(function(read_err, chunk)
      if read_err or not chunk then
        failure = failure or ("connection closed: " .. tostring(read_err))
        return
      end
      buffer = buffer .. chunk
      local newline = buffer:find("\n", 1, true)
      if newline then
        reply = buffer:sub(1, newline - 1)
      end
    end)
  end)
  local done = vim.wait(M.config.timeout_ms, function()
    return reply ~= nil or failure ~= nil
  end, 10)
  pipe:close()
  if not done then
    return nil, "rcmd did not answer within " .. M.config.timeout_ms .. " ms"
  end
  if failure then
    return nil, failure
  end
  local message = vim.json.decode(reply)
  if message.error then
    return nil, message.error.code .. ": " .. message.error.message
  end
  return message.result
end

-- Search and return the results (a list of {root, path, start_line, end_line, symbol, kind, ...}).
function M.search(query, opts)
  opts = opts or {}
  local params = { query = query, limit = opts.limit or M.config.limit, mode = opts.mode or M.config.mode }
  if opts.root then
    params.root = opts.root
  end
  local result, err = M.request("search", params)
  if not result then
    return nil, err
  end
  return result.results
end

-- Results as quickfix entries.
function M.to_qf(results)
  local items = {}
  for _, r in ipairs(results) do
    table.insert(items, {
      filename = r.root .. "/" .. r.path,
      lnum = r.start_line,
      end_lnum = r.end_line,
      text = r.symbol .. " (" .. r.kind .. ")",
    })
  end
  return items
end

-- Search, then pick a result with vim.ui.select and jump to it.
function M.pick(query)
  local results, err = M.search(query)
  if not results then
    vim.notify("rcmd: " .. err, vim.log.levels.ERROR)
    return
  end
  if #results == 0 then
    vim.notify("rcmd: no results for " .. query)
    return
  end
  local items = M.to_qf(results)
  vim.ui.select(items, {
    prompt = "rcmd: " .. query,
    format_item = function(item)
      return vim.fn.fnamemodify(item.filename, ":~:.") .. ":" .. item.lnum .. "  " .. item.text
    end,
  }, function(choice)
    if choice then
      vim.cmd("edit " .. vim.fn.fnameescape(choice.filename))
      vim.api.nvim_win_set_cursor(0, { choice.lnum, 0 })
    end
  end)
end

function M.prompt()
  vim.ui.input({ prompt = "rcmd search: " }, function(query)
    if query and query ~= "" then
      M.pick(query)
    end
  end)
end

return M
