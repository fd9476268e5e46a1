// Multiline on Azure (azd up): resource group + everything in resources.bicep.
targetScope = 'subscription'

@minLength(1)
@maxLength(40)
@description('azd environment name; names and tags derive from it')
param environmentName string

@minLength(1)
@description('Azure region for every resource')
param location string

@description('Create the Event Grid subscription to the blob_created function. The function must exist first: azd sets this after the first deploy (see azure.yaml hooks).')
param deployEventSubscription bool = false

@description('Object id of the principal running azd up (azd fills AZURE_PRINCIPAL_ID): gets blob data access on the data account')
param principalId string = ''

@description('VM size of the Azure ML compute cluster that trains')
param trainingVmSize string = 'Standard_DS3_v2'

@description('Maximum nodes of the training cluster (it scales to zero when idle)')
param trainingMaxNodes int = 4

var tags = { 'azd-env-name': environmentName }

resource group 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: 'rg-${environmentName}'
  location: location
  tags: tags
}

module resources 'resources.bicep' = {
  name: 'multiline-resources'
  scope: group
  params: {
    environmentName: environmentName
    location: location
    tags: tags
    deployEventSubscription: deployEventSubscription
    trainingVmSize: trainingVmSize
    trainingMaxNodes: trainingMaxNodes
    principalId: principalId
  }
}

output AZURE_LOCATION string = location
output AZURE_RESOURCE_GROUP string = group.name
output AZURE_FUNCTION_APP_NAME string = resources.outputs.functionAppName
output AZURE_FUNCTION_APP_URL string = resources.outputs.functionAppUrl
output MULTILINE_STORAGE_ACCOUNT_URL string = resources.outputs.dataBlobEndpoint
output MULTILINE_AML_WORKSPACE string = resources.outputs.workspaceName
output MULTILINE_ACR_NAME string = resources.outputs.registryName
output MULTILINE_AML_IDENTITY_CLIENT_ID string = resources.outputs.trainingIdentityClientId
