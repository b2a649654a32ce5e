-- Drives `admc lsp` from a real Neovim (0.7+), headless. Run by tests/tests/neovim.rs:
--   ADMC=path/to/admc ADM_ROOT=workspace ADM_FILE=file ADM_LINE=l ADM_COL=c ADM_OUT=result \
--   nvim --headless --clean -c "luafile tests/nvim/check.lua"
-- Writes one `key<TAB>value` line per finding to ADM_OUT, then quits.
local admc = os.getenv("ADMC")
local root = os.getenv("ADM_ROOT")
local file = os.getenv("ADM_FILE")
local line = tonumber(os.getenv("ADM_LINE"))
local col = tonumber(os.getenv("ADM_COL"))
local out = assert(io.open(os.getenv("ADM_OUT"), "w"))

local function emit(key, value)
  out:write(key .. "\t" .. tostring(value):gsub("\n", "\\n") .. "\n")
end

local ok, err = pcall(function()
  vim.cmd("edit " .. root .. "/" .. file)
  local bufnr = vim.api.nvim_get_current_buf()
  local client_id = vim.lsp.start_client({ name = "admc", cmd = { admc, "lsp" }, root_dir = root })
  emit("client", client_id ~= nil)
  vim.lsp.buf_attach_client(bufnr, client_id)

  -- A diagnostic arrives for the open buffer.
  vim.wait(20000, function() return #vim.diagnostic.get(bufnr) > 0 end, 50)
  for _, d in ipairs(vim.diagnostic.get(bufnr)) do
    emit("diagnostic", string.format("%d:%d %s %s", d.lnum, d.col, tostring(d.code), d.message:gsub("\n.*", "")))
  end

  local params = {
    textDocument = { uri = vim.uri_from_bufnr(bufnr) },
    position = { line = line, character = col },
  }
  local hover = vim.lsp.buf_request_sync(bufnr, "textDocument/hover", params, 10000)
  for _, response in pairs(hover or {}) do
    if response.result and response.result.contents then
      emit("hover", response.result.contents.value)
    end
  end
  local definition = vim.lsp.buf_request_sync(bufnr, "textDocument/definition", params, 10000)
  for _, response in pairs(definition or {}) do
    local r = response.result
    if r and r.uri then
      emit("definition", string.format("%s:%d:%d", vim.uri_to_fname(r.uri), r.range.start.line, r.range.start.character))
    end
  end
  vim.lsp.stop_client(client_id)
end)
if not ok then
  emit("error", err)
end
out:close()
vim.cmd("qa!")
